//! How each service's error becomes an `ApiError`: its status, code and client message
//! (internals go to the log, never to the client).

use axum::http::StatusCode;

use super::ApiError;
use crate::store::StoreError;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ConversationNotFound(_) => Self::not_found("conversation"),
            StoreError::Unavailable(inner) => {
                tracing::error!(error = %inner, "database unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "The database cannot be reached right now.",
                )
            }
            other => {
                tracing::error!(error = %other, "store error");
                Self::internal()
            }
        }
    }
}

impl From<crate::conversations::ConversationError> for ApiError {
    fn from(e: crate::conversations::ConversationError) -> Self {
        use crate::conversations::ConversationError as E;
        match e {
            E::NotFound => Self::not_found("conversation"),
            E::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            E::Forbidden(role) => {
                Self::forbidden(format!("The {} role may not do this.", role.as_str()))
            }
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::api_keys::ApiKeyError> for ApiError {
    fn from(e: crate::api_keys::ApiKeyError) -> Self {
        use crate::api_keys::ApiKeyError as E;
        match e {
            E::NotFound => Self::not_found("api key"),
            E::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            E::Forbidden(message) => Self::forbidden(message),
            E::Random(detail) => {
                tracing::error!(error = %detail, "no randomness for an api key");
                Self::internal()
            }
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::files::FileError> for ApiError {
    fn from(e: crate::files::FileError) -> Self {
        match e {
            crate::files::FileError::NotFound => Self::not_found("file"),
            crate::files::FileError::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("A file may be at most {limit} bytes."),
            ),
            crate::files::FileError::UnsupportedType(why) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                why,
            ),
            crate::files::FileError::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            crate::files::FileError::Forbidden(role) => {
                Self::forbidden(format!("The {} role may not upload files.", role.as_str()))
            }
            crate::files::FileError::RangeNotSatisfiable { size } => Self::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("The range is outside the file's {size} bytes."),
            )
            .with_details(serde_json::json!({ "size": size })),
            crate::files::FileError::Upload(why) => Self::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("The upload broke off: {why}"),
            ),
            crate::files::FileError::Storage(why) => {
                tracing::error!(error = %why, "file storage error");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "File storage cannot be reached right now.",
                )
            }
            crate::files::FileError::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::chat::ChatError> for ApiError {
    fn from(e: crate::chat::ChatError) -> Self {
        match e {
            crate::chat::ChatError::SpecialistNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "specialist_not_found",
                "No such specialist, or not one you may use.",
            ),
            crate::chat::ChatError::ConversationNotFound => Self::not_found("conversation"),
            crate::chat::ChatError::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            crate::chat::ChatError::AttachmentNotSupported(why) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "attachment_not_supported",
                format!("Attachment not supported: {why}."),
            ),
            crate::chat::ChatError::Forbidden => Self::forbidden("Viewers cannot chat."),
            crate::chat::ChatError::Provider(failure) => {
                let status = match failure.error.code() {
                    "upstream_timeout" => StatusCode::GATEWAY_TIMEOUT,
                    "context_length_exceeded" | "content_filtered" => {
                        StatusCode::UNPROCESSABLE_ENTITY
                    }
                    "upstream_error" => StatusCode::BAD_GATEWAY,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                Self::new(
                    status,
                    failure.error.code(),
                    crate::chat::client_message(&failure.error),
                )
            }
            crate::chat::ChatError::Cut(why) => Self::new(StatusCode::GATEWAY_TIMEOUT, "cut", why),
            crate::chat::ChatError::Budget(inner) => inner.into(),
            crate::chat::ChatError::Files(inner) => inner.into(),
            crate::chat::ChatError::Store(inner) => inner.into(),
            crate::chat::ChatError::Internal => Self::internal(),
            crate::chat::ChatError::ShuttingDown => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The server is shutting down; try again shortly.",
            ),
            crate::chat::ChatError::StreamNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "stream_not_found",
                "This answer's stream is not running on this server (it ended a while ago, or \
                 runs on another instance); its stored message is in the conversation.",
            ),
        }
    }
}

impl From<crate::budgets::BudgetError> for ApiError {
    fn from(e: crate::budgets::BudgetError) -> Self {
        use crate::budgets::BudgetError as E;
        match e {
            E::Exceeded(refusal) => {
                let remaining = refusal.remaining_nano_usd();
                Self::new(
                    StatusCode::PAYMENT_REQUIRED,
                    "budget_exceeded",
                    format!(
                        "This call could cost up to {} nano-USD and {remaining} of your monthly budget is left.",
                        refusal.required_nano_usd
                    ),
                )
                .with_details(serde_json::json!({
                    "monthly_cap_nano_usd": refusal.monthly_cap_nano_usd,
                    "spent_nano_usd": refusal.spent_nano_usd,
                    "reserved_nano_usd": refusal.reserved_nano_usd,
                    "remaining_nano_usd": remaining,
                    "required_nano_usd": refusal.required_nano_usd,
                    "resets_at": refusal
                        .resets_at
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                }))
            }
            E::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "budget_unavailable",
                "Budgets cannot be checked right now; try again shortly.",
            ),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::user_data::UserDataError> for ApiError {
    fn from(e: crate::user_data::UserDataError) -> Self {
        use crate::user_data::UserDataError as E;
        match e {
            E::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            E::Forbidden(message) => Self::forbidden(message),
            E::Files(inner) => inner.into(),
            E::Store(inner) => inner.into(),
        }
    }
}

impl From<crate::usage::UsageError> for ApiError {
    fn from(e: crate::usage::UsageError) -> Self {
        use crate::usage::UsageError as E;
        match e {
            E::Invalid { field, problem } => {
                Self::invalid_field(field, format!("Invalid field `{field}`: {problem}"))
            }
            E::Forbidden(message) => Self::forbidden(message),
            E::Store(inner) => inner.into(),
        }
    }
}
