//! One accounted provider call: tokens, cost in integer nano-USD, latency and outcome.

use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    pub id: Uuid,
    pub request_id: String,
    /// SHA-256 of pepper and lowercase email: never the email itself.
    pub user_hash: String,
    pub conversation_id: Option<Uuid>,
    pub specialist_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cached_tokens: i64,
    pub usage_estimated: bool,
    pub cost_nano_usd: i64,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    pub streamed: bool,
    pub success: bool,
    pub error_code: Option<String>,
    pub created_at: OffsetDateTime,
}
