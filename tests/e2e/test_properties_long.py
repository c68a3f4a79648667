"""The property checks of tests/properties.py with the long example budget (e2e tier)."""
from hypothesis import event, given

from tests import properties as p


@p.LONG
@given(p.files())
def test_validate_accounts_for_every_line_of_any_file_long(file):
    p.check_validate(file[0])


@p.LONG
@given(p.files())
def test_the_score_input_check_long(file):
    event(p.check_score_input(file[0]))


@p.LONG
@given(p.requests)
def test_the_server_request_models_long(body):
    event(p.check_request(body))


@p.LONG
@given(p.split_cases())
def test_split_properties_long(case):
    p.check_split(*case)
