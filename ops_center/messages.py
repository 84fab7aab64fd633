"""The one message catalog of the operations center's API errors: Vietnamese first, English
beside it (docs/style.md §15). Every error body is ``{"error": code, "detail": {"vi", "en"}}``;
the code is stable (clients branch on it), the texts are for people.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


@dataclass(frozen=True, slots=True)
class Message:
    vi: str
    en: str

    def format(self, **params: object) -> Message:
        return Message(self.vi.format(**params), self.en.format(**params))


CATALOG: Final = MappingProxyType(
    {
        # 400-499: the caller can fix it.
        "bad_request": Message("Yêu cầu không hợp lệ.", "Bad request."),
        "validation": Message("Dữ liệu gửi lên không hợp lệ: {names}.", "Invalid input: {names}."),
        "not_authenticated": Message(
            "Chưa đăng nhập hoặc phiên đã hết hạn.", "Not authenticated, or the session has expired."
        ),
        "invalid_token": Message("Mã truy cập không hợp lệ.", "Invalid access token."),
        "bad_credentials": Message("Sai tên đăng nhập hoặc mật khẩu.", "Wrong user name or password."),
        "forbidden": Message(
            "Vai trò của bạn không được phép thực hiện thao tác này.",
            "Your role may not perform this action.",
        ),
        "not_found": Message("Không tìm thấy.", "Not found."),
        "conflict": Message(
            "Không thể thực hiện: sự cố đang ở trạng thái {state}.", "Not possible: the incident is {state}."
        ),
        "unknown_user": Message(
            "Không có người dùng {name} trong phạm vi của sự cố.", "No user {name} who may see this incident."
        ),
        "payload_too_large": Message(
            "Nội dung gửi lên quá lớn (tối đa {limit} byte).",
            "Request body too large (at most {limit} bytes).",
        ),
        "too_many_requests": Message(
            "Quá nhiều lần đăng nhập. Thử lại sau {retry_after} giây.",
            "Too many login attempts. Try again in {retry_after} s.",
        ),
        "range_required": Message(
            "Phải chọn khoảng thời gian (start và end).", "A time range (start and end) is required."
        ),
        "range_invalid": Message(
            "Khoảng thời gian không hợp lệ: end phải sau start.",
            "Invalid time range: end must be after start.",
        ),
        "range_too_long": Message(
            "Khoảng thời gian quá dài (tối đa {max_days} ngày).",
            "Time range too long (at most {max_days} days).",
        ),
        "too_many_points": Message(
            "Quá nhiều điểm dữ liệu ({points}); hãy chọn bucket lớn hơn.",
            "Too many points ({points}); choose a larger bucket.",
        ),
        "bucket_invalid": Message(
            "Bucket không hợp lệ: {bucket} (dùng {allowed}).", "Invalid bucket: {bucket} (use {allowed})."
        ),
        "unknown_metric": Message(
            "Cảm biến {sensor} không đo {metric}.", "Sensor {sensor} does not report {metric}."
        ),
        "command_unsupported": Message(
            "Cảm biến {sensor} (loại {kind}) không nhận lệnh {name}.",
            "Sensor {sensor} (kind {kind}) does not take the command {name}.",
        ),
        "command_args": Message(
            "Tham số không hợp lệ cho lệnh {name}; cần {expected}.",
            "Invalid arguments for {name}; expected {expected}.",
        ),
        "export_too_large": Message(
            "Bản xuất quá lớn (tối đa {max_series} chuỗi số liệu); hãy chọn cảm biến hoặc chỉ số.",
            "Export too large (at most {max_series} series); choose a sensor or a metric.",
        ),
        "unknown_target": Message(
            "Không có {scope} {target} trong danh mục thiết bị.", "No {scope} {target} in the registry."
        ),
        "maintenance_ended": Message(
            "Lịch bảo trì {id} đã kết thúc.", "The maintenance window {id} has already ended."
        ),
        "user_exists": Message("Người dùng {name} đã tồn tại.", "The user {name} already exists."),
        "user_not_found": Message("Không có người dùng {name}.", "No user {name}."),
        "user_invalid": Message("Thông tin người dùng không hợp lệ.", "Invalid user details."),
        "user_name_invalid": Message(
            "Tên đăng nhập không hợp lệ (a-z, 0-9, . _ -; tối đa 64 ký tự).",
            "Invalid user name (a-z, 0-9, . _ -; at most 64 characters).",
        ),
        "user_role_invalid": Message(
            "Vai trò không hợp lệ (một trong: {roles}).", "Unknown role (one of: {roles})."
        ),
        "user_unknown_site": Message(
            "Không có địa bàn {sites} trong danh mục.", "No site {sites} in the registry."
        ),
        "user_sites_required": Message(
            "Vai trò {role} cần ít nhất một địa bàn.", "The role {role} needs at least one site."
        ),
        "password_policy": Message(
            "Mật khẩu phải có ít nhất {min} ký tự, không có khoảng trắng ở đầu hoặc cuối.",
            "A password needs at least {min} characters, without leading or trailing spaces.",
        ),
        "user_self_disable": Message(
            "Không thể tự khóa tài khoản của chính mình.", "You may not disable your own account."
        ),
        "method_not_allowed": Message("Phương thức không được hỗ trợ.", "Method not allowed."),
        "unsupported_media_type": Message("Định dạng nội dung không được hỗ trợ.", "Unsupported media type."),
        # 500-599: ours.
        "store_unavailable": Message(
            "Cơ sở dữ liệu tạm thời không truy cập được. Vui lòng thử lại.",
            "The database is temporarily unavailable. Please retry.",
        ),
        "internal": Message("Lỗi hệ thống. Sự cố đã được ghi lại.", "Internal error. It has been logged."),
        "not_ready": Message("Dịch vụ chưa sẵn sàng.", "The service is not ready."),
        "broker_unavailable": Message(
            "Chưa gửi được lệnh: không kết nối được máy chủ MQTT. Vui lòng thử lại.",
            "The command was not sent: the MQTT broker is not reachable. Please retry.",
        ),
    }
)


def message(code: str, **params: object) -> Message:
    """The catalog entry for ``code``, formatted. An unknown code is a programming error."""
    return CATALOG[code].format(**params) if params else CATALOG[code]
