//! Chat messages (a JSON list, or raw text as one message) rendered by the
//! plain template and by a ChatML Jinja template; and the bytes as a
//! template source of their own (a model's `tokenizer_config.json`)
//! rendering fixed messages. A prompt or a 4xx, never a panic.

use super::common::CHATML;
use dsi_server::ChatTemplate;
use dsi_server::openai::ChatMessage;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let messages: Vec<ChatMessage> = serde_json::from_slice(data).unwrap_or_else(|_| {
        vec![ChatMessage {
            role: "user".into(),
            content: text.to_string(),
        }]
    });
    let chatml = ChatTemplate {
        source: Some(CHATML.into()),
        ..ChatTemplate::default()
    };
    for template in [&ChatTemplate::default(), &chatml] {
        match template.render(&messages) {
            Ok(prompt) => {
                for m in &messages {
                    assert!(
                        prompt.contains(&m.content),
                        "a message's content is in the prompt"
                    );
                }
            }
            Err(error) => assert!(error.status.is_client_error(), "{error:?}"),
        }
    }
    let config = serde_json::json!({ "chat_template": text, "eos_token": "</s>" });
    if let Ok(template) = ChatTemplate::from_tokenizer_config(&config.to_string()) {
        let fixed = [ChatMessage {
            role: "user".into(),
            content: "hello".into(),
        }];
        if let Err(error) = template.render(&fixed) {
            assert!(!error.message.is_empty());
        }
    }
}
