//! A request body, as bytes, through the checks of both endpoints: a
//! request the server would run, or a 4xx with a message; never a panic.

use super::common;
use dsi_server::openai::Endpoint;
use dsi_server::routes::completions::check_body;

pub fn run(data: &[u8]) {
    let state = common::state();
    let config = &state.config;
    for endpoint in [Endpoint::Completions, Endpoint::Chat] {
        match check_body(state, endpoint, data) {
            Ok(prepared) => {
                let request = &prepared.request;
                assert!(!request.prompt.is_empty(), "an empty prompt passed");
                assert!(request.prompt.len() <= config.max_prompt_tokens);
                assert!((1..=config.max_tokens).contains(&request.max_new_tokens));
                assert!(request.prompt.len() + request.max_new_tokens <= config.context);
                let vocab = config.vocab.unwrap_or(usize::MAX);
                assert!(request.prompt.iter().all(|&t| (t as usize) < vocab));
                assert!(prepared.stop.len() <= 4 && prepared.stop.iter().all(|s| !s.is_empty()));
            }
            Err(error) => {
                assert!(error.status.is_client_error(), "{error:?}");
                assert!(!error.message.is_empty());
            }
        }
    }
}
