"""Every case of the bad-input catalogue (tests/bad_inputs.py) ends with exit status 2 and one
`error:` line that names the field or file:line, and writes no results."""

import pytest

from tests.bad_inputs import CASES, DATA, run_case


def test_catalogue_has_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_line(case, tmp_path):
    if case.needs_data and not DATA.is_dir():
        pytest.skip("../shared/data is not beside the checkout")
    code, err = run_case(case, tmp_path)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert case.expect in err, err
    assert "Traceback" not in err
    assert not (tmp_path / "out" / "results.csv").exists()
