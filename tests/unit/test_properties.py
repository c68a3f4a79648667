"""Generated inputs at the boundaries (tests/properties.py), with the fast tier's small example budget."""
from hypothesis import event, given

from tests import properties as p


@p.FAST
@given(p.files())
def test_validate_accounts_for_every_line_of_any_file(file):
    p.check_validate(file[0])


@p.FAST
@given(p.files())
def test_the_score_input_check_accepts_or_refuses_in_one_line(file):
    event(p.check_score_input(file[0]))


@p.FAST
@given(p.requests)
def test_the_server_request_models_accept_only_meaningful_requests(body):
    event(p.check_request(body))


@p.FAST
@given(p.split_cases())
def test_split_keeps_prompt_groups_whole_near_the_target_and_stable_under_append(case):
    p.check_split(*case)
