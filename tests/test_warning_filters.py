"""Loading and fitting silence a known library warning without touching the host's own filters."""
from __future__ import annotations

import threading
import warnings

import pytest

from refusal_predictor import PromptClassifier, ResponseClassifier
from refusal_predictor.warning_filters import ignoring


def test_models_loading_in_several_threads_at_once_leave_the_hosts_filters_as_they_were():
    """warnings.catch_warnings puts back the list it saved: two loads overlapping in two threads left
    an "ignore UserWarning from sklearn" in the host's filters for good (2 of 2 runs of 3 threads x 15 loads)."""
    before = list(warnings.filters)
    loaders = (ResponseClassifier.load, PromptClassifier.load, lambda: ResponseClassifier.load("ngrams"))
    barrier = threading.Barrier(len(loaders))

    def load_often(load):
        barrier.wait()
        for _ in range(8):
            load()

    threads = [threading.Thread(target=load_often, args=(load,)) for load in loaders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert warnings.filters == before


def test_a_filter_the_host_adds_during_a_block_stays_and_nested_blocks_share_theirs():
    before = list(warnings.filters)
    try:
        with ignoring(message="a library's noise"):
            with ignoring(message="a library's noise"):  # another thread's block, say
                pass
            warnings.filterwarnings("error", message="the host's own")
            with warnings.catch_warnings(record=True) as caught:
                warnings.warn("a library's noise", UserWarning)  # the outer block's filter still holds
            assert caught == []
        assert warnings.filters[0][0] == "error" and warnings.filters[1:] == before  # only the block's filter went
        with pytest.warns(UserWarning, match="a library's noise"):
            warnings.warn("a library's noise", UserWarning)
    finally:
        warnings.filters[:] = before


def test_a_filter_the_host_had_already_set_is_left_in_place_and_the_block_still_acts():
    """filterwarnings replaces an equal filter with its own, which the block then removed: the host's
    own "ignore" was gone after every load. Leaving the host's equal filter to act instead failed
    where a later host filter overrode it."""
    before = list(warnings.filters)
    try:
        warnings.filterwarnings("ignore", message="a library's noise", category=UserWarning)
        warnings.simplefilter("error")  # the host's override of it
        hosts = list(warnings.filters)
        with ignoring(message="a library's noise", category=UserWarning):
            assert warnings.filters[1:] == hosts
            warnings.warn("a library's noise", UserWarning)  # ignored: no error
        assert warnings.filters == hosts
        with pytest.raises(UserWarning):
            warnings.warn("a library's noise", UserWarning)
    finally:
        warnings.filters[:] = before
