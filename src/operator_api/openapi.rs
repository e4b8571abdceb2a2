//! `GET /openapi.json`: the callers' APIs (OpenAI's and Anthropic's), the admin REST API, and the reseller
//! MVP's session routes under `/api`, generated from the handlers'
//! annotations and the request and response types; `GET /docs`:
//! Swagger UI over it (served from `public/api-docs`, installed by setup).

use axum::response::{Html, IntoResponse};
use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::ErrorBody;

/// A chat completion request: OpenAI's, with every other field forwarded.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// `provider:model`, `provider/model`, or a bare catalog name.
    #[schema(example = "openai:gpt-4o-mini")]
    model: String,
    #[schema(value_type = Vec<Object>)]
    messages: Vec<serde_json::Value>,
    stream: Option<bool>,
    max_tokens: Option<i64>,
    /// Required with the master key: the user to bill.
    user: Option<String>,
}

/// A chat completion, in OpenAI's shape, with `usage.cost` in USD. Other
/// fields the provider sends are passed on.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    id: String,
    object: String,
    created: i64,
    model: String,
    #[schema(value_type = Vec<Object>)]
    choices: Vec<serde_json::Value>,
    #[schema(value_type = Object)]
    usage: serde_json::Value,
}

/// An embeddings request (OpenAI-compatible providers).
#[derive(Serialize, ToSchema)]
pub struct EmbeddingRequest {
    model: String,
    /// A string or an array of strings or tokens.
    #[schema(value_type = Object)]
    input: serde_json::Value,
}

/// An embeddings response, in OpenAI's shape; other fields the provider
/// sends are passed on.
#[derive(Serialize, ToSchema)]
pub struct EmbeddingResponse {
    object: String,
    #[schema(value_type = Vec<Object>)]
    data: Vec<serde_json::Value>,
    #[schema(value_type = Object)]
    usage: serde_json::Value,
}

/// The models the caller may use, with user prices.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    object: String,
    data: Vec<ModelEntry>,
}

/// One model in [`ModelList`].
#[derive(Serialize, ToSchema)]
pub struct ModelEntry {
    /// `provider:model`.
    id: String,
    object: String,
    created: i64,
    owned_by: String,
    /// USD per 1M input, output, cached input and cache-write (5-minute
    /// and 1-hour) tokens, margin included.
    #[schema(value_type = Option<Object>)]
    pricing: Option<serde_json::Value>,
}

/// `GET /v1/key`: the calling key's usage, balance and limits.
#[derive(Serialize, ToSchema)]
pub struct KeyInfo {
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// `GET /v1/generation`: one request's tokens, cost, latency and status.
#[derive(Serialize, ToSchema)]
pub struct Generation {
    #[schema(value_type = Object)]
    data: serde_json::Value,
}

/// A Messages request in Anthropic's shape; every other field is passed on
/// to Anthropic upstreams and translated for the others.
#[derive(Serialize, ToSchema)]
pub struct MessagesRequest {
    #[schema(example = "anthropic:claude-sonnet-4-5")]
    model: String,
    max_tokens: i64,
    /// `{role: user | assistant, content: string | blocks}`.
    #[schema(value_type = Vec<Object>)]
    messages: Vec<serde_json::Value>,
    /// A string or text blocks.
    #[schema(value_type = Option<Object>)]
    system: Option<serde_json::Value>,
    stream: Option<bool>,
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Vec<serde_json::Value>>,
}

/// A message in Anthropic's shape, with content blocks, `stop_reason` and
/// usage (cache buckets included). Other fields Anthropic sends are passed on.
#[derive(Serialize, ToSchema)]
pub struct AnthropicMessage {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    role: String,
    model: String,
    #[schema(value_type = Vec<Object>)]
    content: Vec<serde_json::Value>,
    stop_reason: Option<String>,
    #[schema(value_type = Object)]
    usage: serde_json::Value,
}

/// A token count request: a Messages request without `max_tokens`.
#[derive(Serialize, ToSchema)]
pub struct CountTokensRequest {
    model: String,
    #[schema(value_type = Vec<Object>)]
    messages: Vec<serde_json::Value>,
}

/// The prompt's tokens.
#[derive(Serialize, ToSchema)]
pub struct TokenCount {
    input_tokens: i64,
}

/// Errors on `/v1/messages`, in Anthropic's shape.
#[derive(Serialize, ToSchema)]
pub struct AnthropicErrorBody {
    /// Always `error`.
    #[serde(rename = "type")]
    kind: String,
    error: AnthropicErrorDetail,
}

/// The inside of [`AnthropicErrorBody`].
#[derive(Serialize, ToSchema)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `permission_error`,
    /// `not_found_error`, `request_too_large`, `rate_limit_error`,
    /// `api_error` or `overloaded_error`.
    #[serde(rename = "type")]
    kind: String,
    message: String,
}

/// A Responses request (OpenAI's Responses API).
#[derive(Serialize, ToSchema)]
pub struct ResponsesRequest {
    model: String,
    /// A string, or items: messages, `function_call`, `function_call_output`.
    #[schema(value_type = Object)]
    input: serde_json::Value,
    instructions: Option<String>,
    /// Continues the conversation of a stored response.
    previous_response_id: Option<String>,
    /// Whether to keep the response (30 days); true unless false.
    store: Option<bool>,
    stream: Option<bool>,
    max_output_tokens: Option<i64>,
    #[schema(value_type = Option<Vec<Object>>)]
    tools: Option<Vec<serde_json::Value>>,
    #[schema(value_type = Option<Object>)]
    metadata: Option<serde_json::Value>,
}

/// A response object: `output` items, `output_text`, `status`, `usage`,
/// and the request's settings echoed.
#[derive(Serialize, ToSchema)]
pub struct ResponseObject {
    id: String,
    object: String,
    created_at: i64,
    status: String,
    model: String,
    #[schema(value_type = Vec<Object>)]
    output: Vec<serde_json::Value>,
    output_text: String,
    #[schema(value_type = Option<Object>)]
    usage: Option<serde_json::Value>,
}

/// A deleted stored response.
#[derive(Serialize, ToSchema)]
pub struct ResponseDeleted {
    id: String,
    object: String,
    deleted: bool,
}

/// Creates a message (Anthropic's Messages API), from any provider; with
/// `stream: true`, Anthropic's server-sent events.
#[utoipa::path(post, path = "/v1/messages", operation_id = "create_message", tag = "anthropic", request_body = MessagesRequest,
    responses(
        (status = 200, description = "A message, or an SSE stream of Anthropic's events", body = AnthropicMessage),
        (status = 400, body = AnthropicErrorBody), (status = 401, body = AnthropicErrorBody),
        (status = 402, description = "No credit or budget left", body = AnthropicErrorBody),
        (status = 403, body = AnthropicErrorBody), (status = 404, body = AnthropicErrorBody),
        (status = 409, body = AnthropicErrorBody), (status = 413, body = AnthropicErrorBody),
        (status = 415, body = AnthropicErrorBody), (status = 422, body = AnthropicErrorBody),
        (status = 429, body = AnthropicErrorBody), (status = 502, body = AnthropicErrorBody),
        (status = 504, body = AnthropicErrorBody)),
    params(("anthropic-version" = Option<String>, Header, description = "Accepted"),
        ("anthropic-beta" = Option<String>, Header, description = "Passed on to Anthropic upstreams"),
        ("Idempotency-Key" = Option<String>, Header,
        description = "Answers a repeat with the same body (within 24 hours) with the first answer, billed once")),
    security(("api_key" = []), ("x_api_key" = []), ("master_key" = [])))]
#[allow(dead_code)]
fn messages() {}

/// Counts a Messages request's input tokens: Anthropic's own count for its
/// models, the gateway's estimate for the others. Free.
#[utoipa::path(post, path = "/v1/messages/count_tokens", operation_id = "count_message_tokens", tag = "anthropic", request_body = CountTokensRequest,
    responses((status = 200, body = TokenCount), (status = 400, body = AnthropicErrorBody),
        (status = 401, body = AnthropicErrorBody), (status = 403, body = AnthropicErrorBody),
        (status = 404, body = AnthropicErrorBody)),
    security(("api_key" = []), ("x_api_key" = [])))]
#[allow(dead_code)]
fn count_tokens() {}

/// Creates a response (OpenAI's Responses API), from any provider; with
/// `stream: true`, the Responses events.
#[utoipa::path(post, path = "/v1/responses", operation_id = "create_response", tag = "openai", request_body = ResponsesRequest,
    responses((status = 200, description = "A response, or an SSE stream of its events", body = ResponseObject),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 402, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "No such model, or no stored `previous_response_id`", body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Answers a repeat with the same body (within 24 hours) with the first answer, billed once")),
    security(("api_key" = []), ("master_key" = [])))]
#[allow(dead_code)]
fn responses() {}

/// A stored response of the caller's user.
#[utoipa::path(get, path = "/v1/responses/{id}", operation_id = "get_response", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, body = ResponseObject), (status = 401, body = ErrorBody),
        (status = 403, description = "The master key reads no one's responses", body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn get_response() {}

/// Deletes a stored response of the caller's user.
#[utoipa::path(delete, path = "/v1/responses/{id}", operation_id = "delete_response", tag = "openai", params(("id" = String, Path)),
    responses((status = 200, body = ResponseDeleted), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn delete_response() {}

/// Creates a chat completion; with `stream: true`, server-sent events ending in `[DONE]`.
#[utoipa::path(post, path = "/v1/chat/completions", operation_id = "create_chat_completion", tag = "openai", request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "A completion, or an SSE stream of chunks", body = ChatCompletion),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 402, description = "`insufficient_credits` or `budget_exceeded`", body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "A request with this `Idempotency-Key` is in flight", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, description = "The body is not JSON", body = ErrorBody),
        (status = 422, description = "The `Idempotency-Key` was used with another body", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 502, body = ErrorBody), (status = 504, body = ErrorBody)),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Answers a repeat with the same body (within 24 hours) with the first answer, billed once")),
    security(("api_key" = []), ("master_key" = [])))]
#[allow(dead_code)]
fn chat_completions() {}

/// Creates embeddings (OpenAI-compatible providers).
#[utoipa::path(post, path = "/v1/embeddings", operation_id = "create_embeddings", tag = "openai", request_body = EmbeddingRequest,
    responses((status = 200, body = EmbeddingResponse), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 402, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Answers a repeat with the same body (within 24 hours) with the first answer, billed once")),
    security(("api_key" = []), ("master_key" = [])))]
#[allow(dead_code)]
fn embeddings() {}

/// Lists the models the caller may use, with the user's price per 1M tokens.
#[utoipa::path(get, path = "/v1/models", operation_id = "list_models", tag = "openai",
    responses((status = 200, body = ModelList), (status = 401, body = ErrorBody)),
    security(("api_key" = []), ("master_key" = [])))]
#[allow(dead_code)]
fn models() {}

/// The calling key's spend today, this month and all time, its balance and limits.
#[utoipa::path(get, path = "/v1/key", operation_id = "get_key_info", tag = "openai",
    responses((status = 200, body = KeyInfo), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn key() {}

/// One request of the caller's, by the gateway's id (`x-generation-id`) or the
/// client's own `x-request-id`.
#[utoipa::path(get, path = "/v1/generation", operation_id = "get_generation", tag = "openai", params(("id" = String, Query)),
    responses((status = 200, body = Generation), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
#[allow(dead_code)]
fn generation() {}

/// The three ways to authenticate (an API key, the master key, or the
/// dashboard's session cookie), and the provider answers that pass on
/// fields the document does not list.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        use utoipa::openapi::RefOr;
        let components = openapi.components.get_or_insert_with(Default::default);
        for passed_on in [
            "ChatCompletion",
            "EmbeddingResponse",
            "AnthropicMessage",
            "ResponseObject",
        ] {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(passed_on) {
                object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(true)));
            }
        }
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "api_key",
            bearer("A user's API key (`llm_sk_…`); also accepted as `X-AnyLLM-Key: Bearer`, `Otari-Key` (with or without `Bearer`) or `x-api-key`."),
        );
        components.add_security_scheme(
            "x_api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "A user's API key, as Anthropic's SDKs send it.",
            ))),
        );
        components.add_security_scheme(
            "master_key",
            bearer("The operator's master key; also accepted as `X-AnyLLM-Key: Bearer` or `Otari-Key` (with or without `Bearer`)."),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::session::COOKIE_NAME,
                "The dashboard's session, set by `POST /api/auth/signup` or `/api/auth/signin`.",
            ))),
        );
    }
}

/// The OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "llm-gateway",
        description = "An LLM gateway with prepaid billing: OpenAI's chat, embeddings and Responses APIs and Anthropic's Messages API for API keys, its operator API (compatible with any-llm-gateway and otari), and the reseller MVP's session routes under `/api`. Every `/v1` route is also under `/api/v1`. Money in requests is USD as a decimal string or a number; errors use OpenAI's shape, and Anthropic's on `/v1/messages`."
    ),
    paths(
        chat_completions, embeddings, messages, count_tokens, responses, get_response, delete_response,
        models, key, generation,
        crate::operator_api::users::create, crate::operator_api::users::list, crate::operator_api::users::show,
        crate::operator_api::users::update, crate::operator_api::users::delete, crate::operator_api::users::usage,
        crate::operator_api::users::credit,
        crate::operator_api::keys::create, crate::operator_api::keys::list, crate::operator_api::keys::show,
        crate::operator_api::keys::update, crate::operator_api::keys::delete,
        crate::operator_api::budgets::create, crate::operator_api::budgets::list, crate::operator_api::budgets::show,
        crate::operator_api::budgets::update, crate::operator_api::budgets::delete,
        crate::operator_api::pricing::list, crate::operator_api::pricing::show, crate::operator_api::pricing::set,
        crate::operator_api::pricing::delete, crate::operator_api::pricing::history,
        crate::operator_api::audit::reconciliation, crate::operator_api::audit::debts,
        crate::server_fns::rest::sign_up, crate::server_fns::rest::sign_in, crate::server_fns::rest::sign_out,
        crate::server_fns::rest::me, crate::server_fns::rest::list_keys, crate::server_fns::rest::create_key,
        crate::server_fns::rest::update_key, crate::server_fns::rest::delete_key, crate::server_fns::rest::balance, crate::server_fns::rest::charge,
        crate::server_fns::rest::usage, crate::webhooks::stripe,
    ),
    modifiers(&Security),
    tags(
        (name = "openai", description = "OpenAI's API: chat, embeddings, Responses, models, for API keys"),
        (name = "anthropic", description = "Anthropic's Messages API, for API keys, from any provider"),
        (name = "users", description = "Users and their credit (master key)"),
        (name = "keys", description = "API keys and their limits (master key)"),
        (name = "budgets", description = "Spending limits for users (master key)"),
        (name = "pricing", description = "The price catalog"),
        (name = "billing", description = "The books: reconciliation and debts (master key)"),
        (name = "account", description = "The reseller MVP's routes: sign-up and sign-in, then the signed-in user's keys, balance and usage (session cookie)"),
        (name = "payments", description = "Stripe's webhook: payments, refunds and disputes, signed by Stripe"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`
pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// `GET /docs`: Swagger UI over `/openapi.json`.
pub async fn docs() -> Html<&'static str> {
    Html(
        r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>llm-gateway API</title>
  <link rel="stylesheet" href="/api-docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"><p style="font-family: sans-serif; margin: 2rem">Loading the API reference… The raw document is at <a href="/openapi.json">/openapi.json</a>.</p></div>
  <script src="/api-docs/swagger-ui-bundle.js"></script>
  <script>window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true });</script>
</body>
</html>"##,
    )
}
