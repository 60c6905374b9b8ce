"""The failure processes behind the simulator's interface: a queried process (replay) and fixed paths."""

from __future__ import annotations

import numpy as np
import pytest

from edgeoff.evaluation.failures import fixed_path, queried_path


class Periodic:
    """Up for 3 s, down for 1 s, repeating, entered at a per-row offset (what a replay loop looks like)."""

    def __init__(self, offsets: np.ndarray) -> None:
        self.offsets = offsets  # (R,)

    def _pos(self, t: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.mod(np.asarray(t, dtype=float)[:, None] + self.offsets[:, None], 4.0) * np.ones(
            (1, 2)
        )
        return out

    def up(self, t: np.ndarray) -> np.ndarray:
        return self._pos(np.broadcast_to(t, self.offsets.shape)) < 3.0

    def until_change(self, t: np.ndarray) -> np.ndarray:
        p = self._pos(np.broadcast_to(t, self.offsets.shape))
        return np.where(p < 3.0, 3.0 - p, 4.0 - p)

    def since_change(self, t: np.ndarray) -> np.ndarray:
        p = self._pos(np.broadcast_to(t, self.offsets.shape))
        return np.where(p < 3.0, p, p - 3.0)


def test_a_queried_process_becomes_a_path_of_its_changes() -> None:
    source = Periodic(np.array([0.0, 3.5]))
    path = queried_path(source, trace_h_per_s=2.0)  # trace hours = 2 x model seconds
    assert path.up0.tolist() == [[True, True], [False, False]]
    assert path.since0[:, 0].tolist() == pytest.approx([0.0, -1.0])  # row 1 went down 0.5 s = 1 h ago
    for t_s in (0.5, 2.9, 3.2, 7.6, 40.1, 121.0):  # far enough to grow the path several times
        state = path.state_at(np.full(2, t_s * 2.0))
        assert state.up[:, 0].tolist() == source.up(np.full(2, t_s))[:, 0].tolist()
        expected_until = t_s + source.until_change(np.full(2, t_s))[:, 0]
        assert state.until[:, 0] == pytest.approx(expected_until * 2.0)


def test_a_fixed_path_is_up_until_its_first_change() -> None:
    path = fixed_path(np.ones((1, 2), dtype=bool), np.full((1, 2), -np.inf), [[[1.0, 2.0], []]])
    s = path.state_at(np.array([0.5]))
    assert s.up.tolist() == [[True, True]]
    assert (s.until[0, 0], s.after[0, 0]) == (1.0, 2.0)
    s = path.state_at(np.array([1.5]))
    assert s.up.tolist() == [[False, True]]
    assert s.since[0, 0] == 1.0
    assert np.isinf(s.until[0, 1])
