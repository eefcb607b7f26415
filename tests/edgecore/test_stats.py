import numpy as np

from edgecore.stats import percentiles


def test_percentiles_use_numpys_definition_and_name_their_keys():
    v = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert percentiles(v) == {f"p{q}": float(np.percentile(v, q)) for q in (50, 90, 99)}
    assert percentiles(iter(v), (50,)) == {"p50": 3.0} and percentiles([]) == {}
