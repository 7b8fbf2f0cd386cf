"""One decoder of replies (sync calls, jobs and the test kit read replies through it): what a
worker may send, and what each shape becomes."""

from __future__ import annotations

from protocol import ErrorCode, replies


def test_a_success_carries_its_result_whatever_json_it_is() -> None:
    for result in (None, 0, "text", [1, {"a": None}], {"nested": {"deep": [True]}}):
        reply = replies.decode(replies.encode_success(result))
        assert reply.ok and reply.result == result and reply.error is None


def test_a_failure_carries_its_code_message_and_what_a_handler_meant() -> None:
    reply = replies.decode(replies.encode_failure("not_found", "no such user", status=404,
                                                  details={"user": 7}))
    assert not reply.ok
    assert reply.failed_with.model_dump() == {"code": "not_found", "message": "no such user",
                                              "status": 404, "details": {"user": 7}}


def test_a_failure_that_names_no_error_is_a_worker_error_saying_so() -> None:
    reply = replies.decode(b'{"ok": false}')
    assert not reply.ok
    assert reply.failed_with.code == ErrorCode.WORKER_ERROR
    assert reply.failed_with.message == "the worker failed without saying why"


def test_a_body_that_is_not_a_reply_is_a_worker_error_naming_the_problem() -> None:
    for body in (b"not json", b"[1, 2]", b'{"result": 1}', b'{"ok": false, "error": {"code": 5}}'):
        reply = replies.decode(body)
        assert not reply.ok, body
        assert reply.failed_with.code == ErrorCode.WORKER_ERROR, body
        assert reply.failed_with.message.startswith("malformed reply: "), body


def test_a_success_that_also_names_an_error_is_validated_as_a_whole() -> None:
    reply = replies.decode(b'{"ok": true, "result": 1, "error": {"code": "x", "message": "y"}}')
    assert reply.ok and reply.result == 1 and reply.error is not None
