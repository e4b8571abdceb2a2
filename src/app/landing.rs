//! `/`: what llm-gateway is, and the way in.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::components::A;

/// The public landing page.
#[component]
pub fn Landing() -> impl IntoView {
    view! {
        <Title text="" />
        <header class="topbar">
            <A href="/" attr:class="brand">"llm-gateway"</A>
            <nav>
                <A href="/models">"Models"</A>
                <A href="/login">"Sign in"</A>
                <A href="/signup" attr:class="button">"Sign up"</A>
            </nav>
        </header>
        <main class="landing">
            <h1>"One API key for every LLM."</h1>
            <p class="lead">
                "An OpenAI-compatible endpoint in front of OpenAI, Anthropic, Gemini and any "
                "OpenAI-compatible provider, with prepaid credits billed per token."
            </p>
            <p>
                <A href="/signup" attr:class="button primary">"Create an account"</A>
            </p>
            // Focusable, so a keyboard can scroll it when it overflows.
            <pre class="snippet" tabindex="0" role="region" aria-label="Calling the gateway from Python">
                <code>
                    "from openai import OpenAI\n"
                    "client = OpenAI(base_url=\"http://localhost:3000/v1\", api_key=\"llm_sk_…\")\n"
                    "client.chat.completions.create(model=\"openai:gpt-4o-mini\", messages=[…])"
                </code>
            </pre>
        </main>
    }
}
