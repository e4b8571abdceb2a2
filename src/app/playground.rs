//! `/dashboard/playground`: chat with any priced model, watch the reply
//! stream in token by token, and see what each reply cost. Replies are billed
//! to the signed-in user like any API request.

use super::resource;
use leptos::prelude::*;
use leptos_meta::Title;
use serde_json::json;

use crate::billing::money::format_usd;
use crate::server_fns::billing::account_summary;
use crate::server_fns::models::{model_catalog, ModelPrice};
use crate::server_fns::playground::ReplyEvent;

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq)]
struct Turn {
    role: &'static str,
    content: String,
    /// (prompt tokens, completion tokens, cost in nano-USD), once billed.
    usage: Option<(i64, i64, i64)>,
}

impl Turn {
    fn new(role: &'static str, content: String) -> Self {
        Self {
            role,
            content,
            usage: None,
        }
    }
}

/// The playground page.
#[component]
pub fn PlaygroundPage() -> impl IntoView {
    let models = resource(|| (), |_| model_catalog());
    let figures = resource(|| (), |_| account_summary());
    let balance = RwSignal::new(None::<i64>);
    let model_select = NodeRef::<leptos::html::Select>::new();
    let message_input = NodeRef::<leptos::html::Textarea>::new();
    let turns = RwSignal::new(Vec::<Turn>::new());
    let busy = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    // Sending needs the WASM client; effects run only once it has hydrated.
    let hydrated = RwSignal::new(false);
    Effect::new(move |_| hydrated.set(true));

    // The form's values are read from the DOM, so anything typed before
    // hydration is kept.
    let send = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let (Some(select), Some(input)) =
            (model_select.get_untracked(), message_input.get_untracked())
        else {
            return;
        };
        let text = input.value().trim().to_string();
        if text.is_empty() || busy.get_untracked() {
            return;
        }
        let chosen = select.value();
        if chosen.is_empty() {
            error.set(Some("Pick a model first.".into()));
            return;
        }
        error.set(None);
        turns.update(|t| t.push(Turn::new("user", text)));
        let body = request_body(&chosen, &turns.get_untracked());
        turns.update(|t| t.push(Turn::new("assistant", String::new())));
        input.set_value("");
        busy.set(true);
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let on_event = move |event| apply(event, turns, error);
            match client::stream_reply(body, on_event).await {
                Ok(request_id) => {
                    let settled = crate::server_fns::playground::settled_balance(request_id).await;
                    if let Ok(settled) = settled {
                        balance.set(Some(settled));
                    }
                }
                Err(message) => {
                    turns.update(|t| {
                        if t.last().is_some_and(|last| last.content.is_empty()) {
                            t.pop();
                        }
                    });
                    error.set(Some(message));
                }
            }
            busy.set(false);
        });
        #[cfg(not(feature = "hydrate"))]
        drop(body);
    };

    view! {
        <Title text="Playground" />
        <h1>"Playground"</h1>
        <p class="muted">
            "Replies stream in as the model writes them, and are billed to your balance like any API request."
        </p>
        <Suspense fallback=|| view! { <p class="loading">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let initial = figures.await.map(|f| f.balance).ok();
                let shown = move || balance.get().or(initial).map(crate::format::dollars);
                view! {
                    <p class="big-figure">
                        <span class="label">"Balance"</span>
                        <strong data-testid="balance">{shown}</strong>
                    </p>
                }
            })}
        </Suspense>
        <section class="card playground">
            <div class="turns" aria-live="polite" data-testid="turns">
                {move || turns.get().into_iter().map(|turn| view! { <TurnView turn /> }).collect_view()}
            </div>
            {move || error.get().map(|message| view! {
                <p class="form-error" role="alert">{message}</p>
            })}
            <form class="form" on:submit=send>
                <label for="model">"Model"</label>
                <Suspense fallback=|| view! { <p class="loading">"Loading models…"</p> }>
                    {move || Suspend::new(async move {
                        match models.await {
                            Ok(models) => view! { <ModelSelect models node_ref=model_select /> }.into_any(),
                            Err(err) => view! { <p class="form-error" role="alert">{err.to_string()}</p> }.into_any(),
                        }
                    })}
                </Suspense>
                <label for="prompt">"Message"</label>
                <textarea id="prompt" rows="3" placeholder="Ask anything…" node_ref=message_input />
                <button type="submit" class="button primary" disabled=move || busy.get() || !hydrated.get()>
                    {move || if busy.get() { "Streaming…" } else { "Send" }}
                </button>
            </form>
        </section>
    }
}

#[component]
fn ModelSelect(models: Vec<ModelPrice>, node_ref: NodeRef<leptos::html::Select>) -> impl IntoView {
    if models.is_empty() {
        return view! { <p class="muted">"No models are configured yet."</p> }.into_any();
    }
    let label = |m: &ModelPrice| {
        format!(
            "{} (${} in / ${} out per 1M)",
            m.id,
            format_usd(m.input_per_million),
            format_usd(m.output_per_million)
        )
    };
    view! {
        <select id="model" node_ref=node_ref>
            {models.iter().map(|m| view! { <option value=m.id.clone()>{label(m)}</option> }).collect_view()}
        </select>
    }
    .into_any()
}

#[component]
fn TurnView(turn: Turn) -> impl IntoView {
    let is_reply = turn.role == "assistant";
    let (test_id, who) = if is_reply {
        ("reply", "Assistant")
    } else {
        ("prompt", "You")
    };
    let usage = turn.usage.map(|(prompt, completion, cost)| {
        view! {
            <p class="turn-cost muted" data-testid="reply-cost">
                {format!("{prompt} in · {completion} out · ${}", format_usd(cost))}
            </p>
        }
    });
    view! {
        <div class=format!("turn {}", turn.role) data-testid=test_id>
            <span class="label">{who}</span>
            <p class="turn-text">{turn.content}</p>
            {usage}
        </div>
    }
}

/// An OpenAI chat body for the conversation so far, streamed with usage.
fn request_body(model: &str, turns: &[Turn]) -> String {
    let messages: Vec<_> = turns
        .iter()
        .filter(|t| !t.content.is_empty())
        .map(|t| json!({ "role": t.role, "content": t.content }))
        .collect();
    json!({
        "model": model,
        "messages": messages,
        "stream": true,
        "stream_options": { "include_usage": true },
    })
    .to_string()
}

/// Applies one stream event to the reply being written.
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
fn apply(event: ReplyEvent, turns: RwSignal<Vec<Turn>>, error: RwSignal<Option<String>>) {
    match event {
        ReplyEvent::Delta(text) => turns.update(|t| {
            if let Some(reply) = t.last_mut() {
                reply.content.push_str(&text);
            }
        }),
        ReplyEvent::Usage {
            prompt_tokens,
            completion_tokens,
            cost,
        } => turns.update(|t| {
            if let Some(reply) = t.last_mut() {
                reply.usage = Some((prompt_tokens, completion_tokens, cost));
            }
        }),
        ReplyEvent::Error(message) => error.set(Some(message)),
        ReplyEvent::Done => {}
    }
}

/// The browser side: posts the chat and reads the reply as it streams.
#[cfg(feature = "hydrate")]
mod client {
    use js_sys::{Reflect, Uint8Array};
    use wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::ReadableStreamDefaultReader;

    use crate::server_fns::playground::{error_message, EventReader, ReplyEvent, CHAT_PATH};

    /// Posts `body` and hands each event to `on_event` the moment its bytes
    /// arrive. Returns the request's id, or the error's message for people.
    pub async fn stream_reply(
        body: String,
        mut on_event: impl FnMut(ReplyEvent),
    ) -> Result<String, String> {
        let response = gloo_net::http::Request::post(CHAT_PATH)
            .header("content-type", "application/json")
            .header("accept", "text/event-stream")
            .body(body)
            .map_err(|err| err.to_string())?
            .send()
            .await
            .map_err(|err| format!("The gateway could not be reached: {err}"))?;
        let request_id = response.headers().get("x-request-id").unwrap_or_default();
        if !response.ok() {
            let text = response.text().await.unwrap_or_default();
            return Err(serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v.get("error").map(error_message))
                .unwrap_or_else(|| {
                    format!("The request failed with status {}.", response.status())
                }));
        }
        let stream = response.body().ok_or("The reply has no body.")?;
        let reader: ReadableStreamDefaultReader = stream.get_reader().unchecked_into();
        let broke_off = |_| "The reply stream broke off.".to_string();
        let mut events = EventReader::default();
        loop {
            let chunk = JsFuture::from(reader.read()).await.map_err(broke_off)?;
            let done = Reflect::get(&chunk, &JsValue::from_str("done"))
                .ok()
                .and_then(|d| d.as_bool())
                .unwrap_or(true);
            if done {
                return Ok(request_id);
            }
            let bytes = Reflect::get(&chunk, &JsValue::from_str("value")).map_err(broke_off)?;
            for event in events.push(&Uint8Array::new(&bytes).to_vec()) {
                on_event(event);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_streams_the_conversation_with_usage() {
        let turns = vec![
            Turn::new("user", "Hi".into()),
            Turn::new("assistant", "Hello!".into()),
            Turn::new("user", "And now?".into()),
            Turn::new("assistant", String::new()),
        ];
        let body: serde_json::Value =
            serde_json::from_str(&request_body("openai:gpt-4o-mini", &turns)).unwrap();
        assert_eq!(body["model"], "openai:gpt-4o-mini");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        let messages = body["messages"].as_array().unwrap();
        assert_eq!(
            messages.len(),
            3,
            "the empty reply being written is left out"
        );
        assert_eq!(
            messages[1],
            json!({"role": "assistant", "content": "Hello!"})
        );
    }
}
