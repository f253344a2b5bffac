"""Per-cell random streams (regbench/regularizers/streams.py): a draw under vmap gives each cell the numbers it
draws alone; nothing touches torch's global generator; streams are derived from the seed alone."""

from __future__ import annotations

import pytest
import torch
from torch.func import vmap

from regbench.regularizers import streams
from regbench.regularizers.base import inverted_dropout


def _gens(seeds, purpose="noise"):
    return [streams.generator(s, purpose) for s in seeds]


@pytest.mark.parametrize("draw", [streams.rand_like, streams.randn_like], ids=["rand", "randn"])
def test_a_stacked_draw_gives_each_cell_its_lone_numbers(draw):
    seeds = [3, 1, 3, 8]  # two cells with one seed draw the same numbers, as they would alone
    like = torch.zeros(4, 5, 6)  # (M, B, D)
    with streams.drawing(_gens(seeds)):
        stacked = vmap(lambda x: draw(x) + 0 * x, randomness="error")(like)
    for m, seed in enumerate(seeds):
        with streams.drawing(_gens([seed])):
            assert torch.equal(stacked[m], draw(like[m]))
    assert torch.equal(stacked[0], stacked[2]) and not torch.equal(stacked[0], stacked[1])


def test_a_stacked_draw_shaped_like_a_constant_is_refused_not_shared():
    # one draw for every cell would tie the cells together: the stack's trial step fails and they train alone
    with streams.drawing(_gens([0, 1])), pytest.raises(RuntimeError, match="shaped like a tensor of the cell"):
        vmap(lambda x: streams.rand_like(torch.zeros(3)) + x, randomness="error")(torch.zeros(2, 3))


def test_draws_move_the_cell_streams_and_leave_the_global_one_alone():
    before = torch.get_rng_state()
    gens = _gens([0, 1])
    with streams.drawing(gens):
        first = vmap(streams.rand_like, randomness="error")(torch.zeros(2, 10))
        second = vmap(streams.rand_like, randomness="error")(torch.zeros(2, 10))
    assert not torch.equal(first, second)  # each draw continues its stream
    assert torch.equal(before, torch.get_rng_state())


def test_a_stack_with_the_wrong_number_of_streams_is_an_error():
    with streams.drawing(_gens([0])), pytest.raises(RuntimeError, match="a stack of 2 cells draws with 1 streams"):
        vmap(streams.rand_like, randomness="error")(torch.zeros(2, 3))


def test_outside_a_cell_the_global_generator_draws():
    torch.manual_seed(0)
    a = streams.rand_like(torch.zeros(5))
    torch.manual_seed(0)
    assert torch.equal(a, torch.rand(5))


def test_masks_do_not_carry_gradients_but_the_activations_do():
    x = torch.ones(2, 8, requires_grad=True)
    with streams.drawing(_gens([0, 1])):
        y = vmap(lambda t: inverted_dropout(t, 0.5), randomness="error")(x)
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(x * noise)/dx = noise = y for x = 1


def test_as_global_continues_the_cell_stream_and_gives_the_global_one_back():
    gen, twin = streams.generator(5, "augment"), streams.generator(5, "augment")
    before = torch.get_rng_state()
    with streams.as_global(gen):
        a = torch.rand(3)
    b = torch.rand(3, generator=gen)
    assert torch.equal(torch.cat([a, b]), torch.rand(6, generator=twin))
    assert torch.equal(before, torch.get_rng_state())


def test_streams_are_derived_from_the_seed_and_purpose_and_their_state_round_trips():
    assert streams.derive(0, "noise") != streams.derive(1, "noise") != streams.derive(0, "augment")
    assert 0 <= streams.derive(2**64 - 1, "noise") < 2**63
    cell = streams.Streams.of(4)
    state = cell.state()
    drawn = [torch.rand(3, generator=getattr(cell, k)) for k in state]
    cell.load_state(state)
    assert all(torch.equal(d, torch.rand(3, generator=getattr(cell, k))) for d, k in zip(drawn, state, strict=True))
    # the data order keeps the seed's own generator: runs made before streams existed had the same order
    fresh = streams.Streams.of(4)
    assert torch.equal(torch.randperm(10, generator=fresh.order),
                       torch.randperm(10, generator=torch.Generator().manual_seed(4)))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_a_stacked_cell_draws_its_lone_numbers_and_augments_from_its_own_stream():
    gens = [streams.generator(s, "noise", "cuda") for s in (0, 1)]
    like = torch.zeros(2, 64, 32, device="cuda")
    with streams.drawing(gens):
        stacked = vmap(streams.rand_like, randomness="error")(like)
    with streams.drawing([streams.generator(1, "noise", "cuda")]):
        assert torch.equal(stacked[1], streams.rand_like(like[1]))
    gen, twin = streams.generator(2, "augment", "cuda"), streams.generator(2, "augment", "cuda")
    before = torch.cuda.get_rng_state()
    with streams.as_global(gen):
        a = torch.rand(3, device="cuda")
    b = torch.rand(3, device="cuda", generator=gen)
    # draw for draw (Philox advances its offset per call, so 3 + 3 is not one call of 6)
    assert torch.equal(a, torch.rand(3, device="cuda", generator=twin))
    assert torch.equal(b, torch.rand(3, device="cuda", generator=twin))
    assert torch.equal(before, torch.cuda.get_rng_state())
