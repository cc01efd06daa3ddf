//! Nothing is silently ignored: every top-level field of a request is one
//! this server serves, or the request is refused with a 400 that names it.
//!
//! Fields whose *values* may be unsupported (`n`, `best_of`, `suffix`,
//! `response_format`, `tools`, `tool_choice`) are served here for the
//! values that mean "nothing special" and checked in [`crate::prepare`].

use crate::error::ApiError;
use crate::openai::Endpoint;

/// Fields both endpoints serve.
const COMMON: &[&str] = &[
    "model",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "stream",
    "stream_options",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "logit_bias",
    "min_tokens",
    "ignore_eos",
    "user",
    "mode",
    "lookahead",
    "targets",
    "speculative",
];

/// Fields only `/v1/completions` serves.
const COMPLETIONS: &[&str] = &["prompt", "logprobs", "echo", "best_of", "suffix"];

/// Fields only `/v1/chat/completions` serves.
const CHAT: &[&str] = &[
    "messages",
    "logprobs",
    "top_logprobs",
    "response_format",
    "tools",
    "tool_choice",
];

/// OpenAI fields this server knows and does not serve, with what to do.
const REFUSED: &[(&str, &str)] = &[
    (
        "functions",
        "function calling is not supported: describe the functions in a message",
    ),
    (
        "function_call",
        "function calling is not supported: describe the functions in a message",
    ),
    (
        "parallel_tool_calls",
        "tool calling is not supported: describe the tools in a message",
    ),
    (
        "audio",
        "audio output is not supported: this server returns text",
    ),
    (
        "modalities",
        "only text output is supported: remove modalities",
    ),
    (
        "prediction",
        "predicted outputs are not supported: remove prediction",
    ),
    (
        "reasoning_effort",
        "this model has no reasoning settings: remove reasoning_effort",
    ),
    (
        "web_search_options",
        "web search is not supported: this server cannot reach the network",
    ),
    (
        "service_tier",
        "this server has one service tier: remove service_tier",
    ),
    ("store", "this server stores no completions: remove store"),
    (
        "metadata",
        "this server stores no completions: remove metadata",
    ),
];

/// Refuses the first field of `body` that `endpoint` does not serve. A
/// field sent as `null` asks for nothing and passes.
pub fn check(body: &serde_json::Value, endpoint: Endpoint) -> Result<(), ApiError> {
    let Some(object) = body.as_object() else {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    };
    let own = match endpoint {
        Endpoint::Completions => COMPLETIONS,
        Endpoint::Chat => CHAT,
    };
    for (name, value) in object {
        if value.is_null() || COMMON.contains(&name.as_str()) || own.contains(&name.as_str()) {
            continue;
        }
        let message = match REFUSED.iter().find(|(field, _)| field == name) {
            Some((_, why)) => format!("{name} is not supported: {why}"),
            None => format!(
                "{name} is not a field of {} here: remove it (fields served: {}, {})",
                endpoint.path(),
                own.join(", "),
                COMMON.join(", ")
            ),
        };
        return Err(ApiError::invalid_field(name, message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn served_fields_pass_and_others_are_named() {
        let ok = json!({"prompt": "a", "logprobs": 2, "echo": true, "functions": null});
        assert!(check(&ok, Endpoint::Completions).is_ok());
        let tools = check(&json!({"messages": [], "functions": []}), Endpoint::Chat).unwrap_err();
        assert!(
            tools.message.starts_with("functions is not supported"),
            "{tools:?}"
        );
        assert_eq!(tools.param_name(), Some("functions"));
        let unknown =
            check(&json!({"prompt": "a", "colour": 1}), Endpoint::Completions).unwrap_err();
        assert!(
            unknown
                .message
                .contains("colour is not a field of /v1/completions")
        );
        let misplaced = check(
            &json!({"prompt": "a", "top_logprobs": 2}),
            Endpoint::Completions,
        )
        .unwrap_err();
        assert!(misplaced.message.contains("top_logprobs"));
        assert!(check(&json!([1]), Endpoint::Chat).is_err());
    }
}
