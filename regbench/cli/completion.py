"""Shell completion for `regbench run` (bash, zsh, fish): config groups, options and keys.

Hydra's own `-sc install=...` scripts assume the Hydra app is the whole command: they call
`<first word> -sc query=...` and strip only the first word of the line, so behind the `run`
subcommand they query the wrong command and fail to parse `run` as an override. The install
scripts here are short hand-written shell (no library writes completion for a subcommand of a
Hydra app); they complete the subcommand, and after `regbench run` ask
`regbench run -sc query=<shell>` with the shell's COMP_LINE. The query itself is Hydra's: it
gets the line with `regbench run` taken off, so it completes groups (`dropout=` -> the dropout
types), options (`+experiment=`) and keys (`trainer.ep` -> `trainer.epochs=`) exactly as for any
Hydra app.
"""

from __future__ import annotations

import os
import re

SHELLS = ("bash", "zsh", "fish")
COMPLETION_FLAGS = ("-sc", "--shell-completion")

# bash (and zsh through bashcompinit). `=` and `:` are word breaks in bash, so the word being
# completed is taken from COMP_LINE up to the cursor, and each reply drops the part before the
# last break (bash replaces only what follows it); the global COMP_WORDBREAKS stays untouched.
_BASH = r"""_regbench_completion()
{
    local line="${COMP_LINE:0:COMP_POINT}"
    local cur="${line##*[[:space:]]}"
    local -a words=($line)
    local n=${#words[@]}
    [[ -z "$cur" ]] && n=$((n + 1))
    COMPREPLY=()
    if (( n <= 2 )); then
        COMPREPLY=($(compgen -W "SUBCOMMANDS --help --version" -- "$cur"))
        return
    fi
    [[ "${words[1]}" == run ]] || return 0
    local choices
    choices=$(COMP_LINE="$line" COMP_POINT="${#line}" "${words[0]}" run -sc query=bash 2>/dev/null)
    local keep="${cur%"${cur##*[=:]}"}"
    local choice
    for choice in $choices; do
        [[ "$choice" == "$cur"* ]] && COMPREPLY+=("${choice#"$keep"}")
    done
}
complete -o nospace -o default -F _regbench_completion regbench
"""

_FISH = r"""function __regbench_complete_run
    set -l tokens (commandline -opc)
    env COMP_LINE=(commandline -cp) $tokens[1] run -sc query=fish 2>/dev/null
end
complete -c regbench -n __fish_use_subcommand -f -a 'SUBCOMMANDS'
complete -c regbench -n '__fish_seen_subcommand_from run' -f -a '(__regbench_complete_run)'
"""


def install_script(shell: str) -> str:
    """The script that `eval "$(regbench run -sc install=bash)"` (or `| source` in fish) loads."""
    script = _FISH if shell == "fish" else _BASH
    from regbench.cli.usage import SUBCOMMANDS

    script = script.replace("SUBCOMMANDS", " ".join(SUBCOMMANDS))
    if shell == "zsh":  # zsh runs bash completion functions through bashcompinit
        script = "autoload -U +X bashcompinit && bashcompinit\n" + script
    return script


def strip_subcommand(line: str) -> str:
    """`path/to/regbench run dropout=` -> `regbench dropout=`: the line Hydra's query expects."""
    match = re.match(r"\s*\S+\s+run(\s|$)", line)
    return "regbench " + line[match.end():] if match else line


def parse(args: list[str]) -> tuple[str, str] | None:
    """(action, shell) for `-sc install=bash` style arguments; None if there is no -sc flag."""
    from regbench.core.errors import ConfigError

    flag = next((i for i, a in enumerate(args) if a in COMPLETION_FLAGS), None)
    if flag is None:
        return None
    value = args[flag + 1] if flag + 1 < len(args) else ""
    action, _, shell = value.partition("=")
    if action not in ("install", "uninstall", "query") or shell not in SHELLS:
        raise ConfigError(f"-sc {value!r} is not valid; valid: -sc install=SHELL, -sc uninstall=SHELL or "
                          f"-sc query=SHELL with SHELL one of {', '.join(SHELLS)}")
    return action, shell


def uninstall_script(shell: str) -> str:
    if shell == "fish":
        return "complete -e -c regbench\nfunctions -e __regbench_complete_run\n"
    return "complete -r regbench 2>/dev/null\nunset -f _regbench_completion\n"


def handle(action: str, shell: str) -> bool:
    """Print the install/uninstall script (True: done), or prepare a query for Hydra (False).

    For a query, COMP_LINE loses `regbench run`; the `-sc query=<shell>` flag then goes to Hydra
    unchanged (zsh's query is bash's: zsh runs the bash script).
    """
    if action == "install":
        print(install_script(shell), end="")
        return True
    if action == "uninstall":
        print(uninstall_script(shell), end="")
        return True
    os.environ["COMP_LINE"] = strip_subcommand(os.environ.get("COMP_LINE", "regbench run "))
    return False
