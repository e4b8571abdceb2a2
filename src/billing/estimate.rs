//! The prompt estimate a request's reservation is made on: everything in
//! the body that a provider bills as input tokens, counted before the
//! provider is called.
//!
//! - **Text**: every string of the messages (every role and content
//!   part), plus OpenAI's 3 tokens of framing per message and 3 to prime
//!   the reply; and every key and value of what else the body carries
//!   (tool and function schemas, `response_format`, and whatever is not a
//!   sampling parameter), with a token apiece for their framing. Text counts
//!   about four ASCII characters a token and one token for every other
//!   character.
//! - **Images**, by the target provider's published rule ([`ImageRule`]),
//!   from the image's size when it is inline (PNG, JPEG, GIF and WebP
//!   headers are read), else at the rule's largest size.
//! - **Audio**: 32 tokens a second (Gemini's rate, above OpenAI's), the
//!   duration read from a WAV header, else bounded as if the audio were
//!   coded at 8 kbit/s (1,000 bytes a second), the lowest rate in use.
//! - **Files**: a PDF costs [`PDF_PAGE_TOKENS`] a page (its text and a
//!   page image, Anthropic's upper figures); its pages are counted in the
//!   file, or bounded at one per 3,000 bytes when they cannot be. Other
//!   inline files count as text. A file sent by id, which the gateway
//!   cannot see, counts [`FILE_REFERENCE_TOKENS`].
//!
//! An estimate only reserves: a call is billed on the provider's reported
//! usage, and a call that costs more than its reservation still pays in
//! full (the balance shows the debt).

use base64::Engine;
use serde_json::{Map, Value};

use crate::config::ProviderKind;

/// Tokens a PDF page is reserved at: up to 3,000 tokens of text and a
/// page image of up to 1,600.
pub const PDF_PAGE_TOKENS: i64 = 4_600;
/// Tokens a file sent by id (not inline) is reserved at.
pub const FILE_REFERENCE_TOKENS: i64 = 32_000;
/// Audio tokens per second.
const AUDIO_TOKENS_PER_SECOND: i64 = 32;
/// The fewest bytes a second of audio takes (8 kbit/s).
const AUDIO_MIN_BYTES_PER_SECOND: i64 = 1_000;
/// OpenAI's framing: tokens per message, and to prime the reply.
const TOKENS_PER_MESSAGE: i64 = 3;
const REPLY_PRIMING: i64 = 3;
/// Inline data read to find an image's size (base64 characters).
const SNIFF_CHARS: usize = 96 * 1024;

/// Whether a request field steers sampling or delivery, and costs no tokens.
fn is_parameter(key: &str) -> bool {
    matches!(
        key,
        "model"
            | "stream"
            | "stream_options"
            | "max_tokens"
            | "max_completion_tokens"
            | "max_output_tokens"
            | "n"
            | "temperature"
            | "top_p"
            | "top_k"
            | "seed"
            | "user"
            | "metadata"
            | "logit_bias"
            | "logprobs"
            | "top_logprobs"
            | "presence_penalty"
            | "frequency_penalty"
            | "store"
            | "service_tier"
            | "parallel_tool_calls"
            | "stop"
            | "stop_sequences"
            | "modalities"
            | "reasoning_effort"
            | "prediction"
            | "encoding_format"
            | "dimensions"
    )
}

/// How a provider counts an image's tokens, as it publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRule {
    /// OpenAI's tiles: scaled to fit 2048×2048, then its short side to
    /// 768 px; `base` plus `per_tile` for each 512-px tile (`base` alone
    /// at `detail: low`).
    OpenAiTiles { base: i64, per_tile: i64 },
    /// OpenAI's patches (the mini and nano models): 32-px patches, at most
    /// 1,536, times a model's multiplier (in thousandths).
    OpenAiPatches { multiplier_milli: i64 },
    /// Anthropic: width × height / 750, once scaled to a long edge of at
    /// most 1,568 px and at most 1,600 tokens.
    Anthropic,
    /// Gemini: 258 tokens up to 384 px a side, else 258 per 768-px tile,
    /// the image scaled to at most 3,072 px a side.
    Gemini,
}

impl ImageRule {
    /// The rule of a target: its provider's, and for OpenAI its model's.
    pub fn for_target(kind: ProviderKind, model: &str) -> Self {
        match kind {
            ProviderKind::Anthropic => Self::Anthropic,
            ProviderKind::Gemini => Self::Gemini,
            ProviderKind::Openai | ProviderKind::Demo => openai_rule(model),
        }
    }

    /// An image's tokens, from its size when known, else at the largest.
    pub fn tokens(self, size: Option<(u64, u64)>, low_detail: bool) -> i64 {
        match self {
            Self::OpenAiTiles { base, .. } if low_detail => base,
            Self::OpenAiTiles { base, per_tile } => {
                let (width, height) = size.unwrap_or((768, 2048));
                let (width, height) = fit_within(width, height, 2048);
                let (width, height) = shortest_side(width, height, 768);
                let tiles = width.div_ceil(512) * height.div_ceil(512);
                base + per_tile * tiles as i64
            }
            Self::OpenAiPatches { multiplier_milli } => {
                let patches = size.map_or(1536, |(w, h)| openai_patches(w, h));
                ceil_div(patches * multiplier_milli, 1000)
            }
            Self::Anthropic => {
                let Some((width, height)) = size else {
                    return 1600;
                };
                let (width, height) = fit_within(width, height, 1568);
                ((width * height).div_ceil(750) as i64).min(1600)
            }
            Self::Gemini => {
                let (width, height) = size.unwrap_or((3072, 3072));
                let (width, height) = fit_within(width, height, 3072);
                if width <= 384 && height <= 384 {
                    258
                } else {
                    258 * (width.div_ceil(768) * height.div_ceil(768)) as i64
                }
            }
        }
    }
}

/// OpenAI's rule for `model`, by its published table (tiles unless the
/// model is one of the patch-counted ones).
fn openai_rule(model: &str) -> ImageRule {
    let model = model.rsplit('/').next().unwrap_or(model);
    let patches = |multiplier_milli| ImageRule::OpenAiPatches { multiplier_milli };
    let tiles = |base, per_tile| ImageRule::OpenAiTiles { base, per_tile };
    if model.starts_with("gpt-4.1-mini") || model.starts_with("gpt-5-mini") {
        patches(1620)
    } else if model.starts_with("gpt-4.1-nano") || model.starts_with("gpt-5-nano") {
        patches(2460)
    } else if model.starts_with("o4-mini") {
        patches(1720)
    } else if model.starts_with("gpt-4o-mini") {
        tiles(2833, 5667)
    } else if model.starts_with("o1") || model.starts_with("o3") {
        tiles(75, 150)
    } else if model.starts_with("gpt-5") {
        tiles(70, 140)
    } else if model.starts_with("computer-use") {
        tiles(65, 129)
    } else {
        tiles(85, 170)
    }
}

/// Scales down (never up) to fit `max_side` a side.
fn fit_within(width: u64, height: u64, max_side: u64) -> (u64, u64) {
    let longest = width.max(height);
    if longest <= max_side || longest == 0 {
        return (width.max(1), height.max(1));
    }
    (
        (width * max_side).div_ceil(longest).max(1),
        (height * max_side).div_ceil(longest).max(1),
    )
}

/// Scales down (never up) so the shorter side is `side`.
fn shortest_side(width: u64, height: u64, side: u64) -> (u64, u64) {
    let shortest = width.min(height);
    if shortest <= side {
        return (width, height);
    }
    (
        (width * side).div_ceil(shortest),
        (height * side).div_ceil(shortest),
    )
}

/// OpenAI's patch count: 32-px patches covering the image, which is first
/// scaled down, to whole patches, when it would need more than 1,536.
fn openai_patches(width: u64, height: u64) -> i64 {
    const MAX: f64 = 1536.0;
    let (w, h) = (width.max(1) as f64, height.max(1) as f64);
    let patches = (w / 32.0).ceil() * (h / 32.0).ceil();
    if patches <= MAX {
        return patches as i64;
    }
    let shrink = (32.0 * 32.0 * MAX / (w * h)).sqrt();
    let (pw, ph) = (w * shrink / 32.0, h * shrink / 32.0);
    let shrink = shrink * (pw.floor() / pw).min(ph.floor() / ph);
    let patches = (w * shrink / 32.0).ceil() * (h * shrink / 32.0).ceil();
    patches.min(MAX) as i64
}

/// `a / b` rounded up, for `a ≥ 0` and `b > 0`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// A text's tokens: about four ASCII characters a token, one for every
/// other character.
pub fn text_tokens(text: &str) -> i64 {
    let (mut ascii, mut others) = (0i64, 0i64);
    for byte in text.bytes() {
        if byte.is_ascii() {
            ascii += 1;
        } else if byte & 0xC0 != 0x80 {
            others += 1; // The first byte of a character; the rest continue it.
        }
    }
    (ascii + 3) / 4 + others
}

/// A request body's prompt tokens for the dearest of `rules` (the image
/// rules of the targets it may go to); text alone when there are none.
pub fn prompt_tokens(body: &Map<String, Value>, rules: &[ImageRule]) -> i64 {
    let default = ImageRule::OpenAiTiles {
        base: 85,
        per_tile: 170,
    };
    let first = count_prompt(body, rules.first().copied().unwrap_or(default));
    if !first.media {
        return first.tokens; // Text alone counts the same under every rule.
    }
    rules
        .iter()
        .skip(1)
        .map(|&rule| count_prompt(body, rule).tokens)
        .fold(first.tokens, i64::max)
}

/// The prompt's tokens under one image rule.
fn count_prompt(body: &Map<String, Value>, rule: ImageRule) -> Count {
    let mut count = Count {
        rule,
        tokens: 0,
        framed: true,
        media: false,
    };
    for (key, value) in body {
        if is_parameter(key) {
            continue;
        }
        match (is_message_list(key), value.as_array()) {
            (true, Some(messages)) => {
                count.add(REPLY_PRIMING + TOKENS_PER_MESSAGE * messages.len() as i64);
                let mut inner = Count {
                    framed: false,
                    tokens: 0,
                    ..count
                };
                inner.value(value);
                count.add(inner.tokens);
                count.media |= inner.media;
            }
            _ => {
                count.key(key);
                count.value(value);
            }
        }
    }
    count
}

/// The fields whose items are messages (OpenAI, Anthropic, Responses, Gemini).
fn is_message_list(key: &str) -> bool {
    matches!(key, "messages" | "input" | "contents")
}

/// An embeddings request's input tokens: strings counted as text, token
/// arrays by their length.
pub fn embedding_tokens(input: &Value) -> i64 {
    match input {
        Value::String(text) => text_tokens(text),
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(embedding_tokens).sum(),
        _ => 0,
    }
}

/// A walk over a body that adds up its tokens under one image rule.
#[derive(Clone, Copy)]
struct Count {
    rule: ImageRule,
    tokens: i64,
    /// Whether keys and the framing of values count: not in messages,
    /// whose structure the provider renders in the per-message framing.
    framed: bool,
    /// Whether an image, audio or a file was counted (whose tokens depend
    /// on the rule).
    media: bool,
}

impl Count {
    /// Adds tokens, saturating: a hostile body cannot wrap the count.
    fn add(&mut self, tokens: i64) {
        self.tokens = self.tokens.saturating_add(tokens.max(0));
    }

    fn key(&mut self, key: &str) {
        if self.framed {
            self.add(text_tokens(key));
        }
    }

    fn value(&mut self, value: &Value) {
        let framing = i64::from(self.framed);
        match value {
            Value::String(text) => self.add(text_tokens(text) + framing),
            Value::Number(_) | Value::Bool(_) => self.add(framing),
            Value::Null => {}
            Value::Array(items) => items.iter().for_each(|item| self.value(item)),
            Value::Object(map) => match media_tokens(map, self.rule) {
                Some(tokens) => {
                    self.add(tokens);
                    self.media = true;
                }
                None => {
                    for (key, value) in map {
                        self.key(key);
                        self.value(value);
                    }
                }
            },
        }
    }
}

/// The tokens of a content part that is an image, audio or a file, in any
/// of the shapes OpenAI, Anthropic and Gemini take; `None` for anything else.
fn media_tokens(part: &Map<String, Value>, rule: ImageRule) -> Option<i64> {
    let field = |name: &str| part.get(name);
    fn text(value: Option<&Value>) -> Option<&str> {
        value.and_then(Value::as_str)
    }
    match text(field("type")) {
        Some("image_url") => {
            let image = field("image_url")?;
            let (url, detail) = match image {
                Value::String(url) => (Some(url.as_str()), None),
                other => (text(other.get("url")), text(other.get("detail"))),
            };
            Some(image_tokens(url.and_then(data_url_payload), detail, rule))
        }
        Some("input_image") => {
            let data = text(field("image_url")).and_then(data_url_payload);
            Some(image_tokens(data, text(field("detail")), rule))
        }
        Some("image") => {
            let source = field("source")?;
            let data = text(source.get("data"))
                .or_else(|| text(source.get("url")).and_then(data_url_payload));
            Some(image_tokens(data, None, rule))
        }
        Some("input_audio") => {
            let audio = field("input_audio")?;
            Some(audio_tokens(
                text(audio.get("data"))?,
                text(audio.get("format")),
            ))
        }
        Some("file") => Some(file_tokens(field("file")?)),
        Some("input_file") => Some(file_tokens_of(part)),
        Some("document") => {
            let source = field("source")?;
            match text(source.get("type")) {
                Some("text") => Some(text_tokens(text(source.get("data")).unwrap_or(""))),
                Some("base64") => Some(inline_file_tokens(text(source.get("data"))?)),
                _ => Some(FILE_REFERENCE_TOKENS),
            }
        }
        _ => {
            // Gemini's own parts.
            if let Some(inline) = field("inlineData").or_else(|| field("inline_data")) {
                let data = text(inline.get("data"))?;
                let mime = text(inline.get("mimeType").or_else(|| inline.get("mime_type")));
                return Some(match mime {
                    Some(m) if m.starts_with("image/") => image_tokens(Some(data), None, rule),
                    Some(m) if m.starts_with("audio/") => {
                        audio_tokens(data, m.strip_prefix("audio/"))
                    }
                    _ => inline_file_tokens(data),
                });
            }
            field("fileData")
                .or_else(|| field("file_data"))
                .filter(|v| v.is_object())
                .map(|_| FILE_REFERENCE_TOKENS)
        }
    }
}

/// The base64 payload of a `data:` URL.
fn data_url_payload(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    meta.ends_with(";base64").then_some(data)
}

/// An image's tokens under `rule`, sized from its inline data if any.
fn image_tokens(data: Option<&str>, detail: Option<&str>, rule: ImageRule) -> i64 {
    let size = data.and_then(|data| image_size(&decode_head(data, SNIFF_CHARS)));
    rule.tokens(size, detail == Some("low"))
}

/// Decodes up to `chars` characters of base64 (whole quanta), leniently:
/// the URL-safe alphabet is read as the standard one, and anything that is
/// not base64 ends the data.
fn decode_head(data: &str, chars: usize) -> Vec<u8> {
    let mut clean: Vec<u8> = data
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
        .take(chars)
        .map(|b| match b {
            b'-' => b'+',
            b'_' => b'/',
            other => other,
        })
        .collect();
    clean.truncate(clean.len() / 4 * 4);
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(&clean)
        .unwrap_or_default()
}

/// The bytes base64 text decodes to.
fn decoded_len(data: &str) -> i64 {
    let chars = data
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b'=')
        .count();
    (chars * 3 / 4) as i64
}

/// The width and height in an image's header: PNG, GIF, JPEG or WebP.
pub fn image_size(bytes: &[u8]) -> Option<(u64, u64)> {
    let u16_be =
        |at: usize| Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as u64);
    let u16_le =
        |at: usize| Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as u64);
    let u32_be =
        |at: usize| Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as u64);
    let u24_le = |at: usize| {
        let b = bytes.get(at..at + 3)?;
        Some(b[0] as u64 | (b[1] as u64) << 8 | (b[2] as u64) << 16)
    };
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.get(12..16) == Some(b"IHDR") {
        return Some((u32_be(16)?, u32_be(20)?));
    }
    if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        return Some((u16_le(6)?, u16_le(8)?));
    }
    if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        return match bytes.get(12..16)? {
            b"VP8X" => Some((u24_le(24)? + 1, u24_le(27)? + 1)),
            b"VP8 " => Some((u16_le(26)? & 0x3fff, u16_le(28)? & 0x3fff)),
            b"VP8L" => {
                let b = bytes.get(21..25)?;
                let bits = u32::from_le_bytes(b.try_into().ok()?) as u64;
                Some(((bits & 0x3fff) + 1, ((bits >> 14) & 0x3fff) + 1))
            }
            _ => None,
        };
    }
    if bytes.starts_with(b"\xff\xd8") {
        let mut at = 2;
        while at + 4 <= bytes.len() {
            if bytes[at] != 0xff {
                at += 1;
                continue;
            }
            let marker = bytes[at + 1];
            // Padding, and markers that stand alone.
            if marker == 0xff || marker == 0x01 || (0xd0..=0xd8).contains(&marker) {
                at += if marker == 0xff { 1 } else { 2 };
                continue;
            }
            let length = u16_be(at + 2)? as usize;
            let is_frame = (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc);
            if is_frame {
                return Some((u16_be(at + 7)?, u16_be(at + 5)?));
            }
            at += 2 + length;
        }
    }
    None
}

/// Audio's tokens: its duration from a WAV header, else bounded by its size.
fn audio_tokens(data: &str, format: Option<&str>) -> i64 {
    let bytes = decoded_len(data);
    let head = decode_head(data, 64);
    let wav_seconds = (format.is_none_or(|f| f.eq_ignore_ascii_case("wav"))
        && head.starts_with(b"RIFF")
        && head.get(8..12) == Some(b"WAVE"))
    .then(|| {
        head.get(28..32)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    })
    .flatten()
    .filter(|rate| *rate > 0)
    .map(|byte_rate| (bytes as f64 / byte_rate as f64).ceil() as i64);
    let seconds = wav_seconds.unwrap_or_else(|| ceil_div(bytes, AUDIO_MIN_BYTES_PER_SECOND));
    seconds.max(1).saturating_mul(AUDIO_TOKENS_PER_SECOND)
}

/// A file part's tokens: inline data by its kind, a reference at the bound.
fn file_tokens(file: &Value) -> i64 {
    file.as_object()
        .map_or(FILE_REFERENCE_TOKENS, file_tokens_of)
}

fn file_tokens_of(file: &Map<String, Value>) -> i64 {
    let data = file
        .get("file_data")
        .or_else(|| file.get("data"))
        .and_then(Value::as_str);
    match data {
        Some(data) => inline_file_tokens(data_url_payload(data).unwrap_or(data)),
        None => FILE_REFERENCE_TOKENS,
    }
}

/// An inline file's tokens: a PDF by its pages, anything else as text.
fn inline_file_tokens(data: &str) -> i64 {
    let bytes = decode_head(data, usize::MAX);
    if bytes.starts_with(b"%PDF") {
        return pdf_pages(&bytes).saturating_mul(PDF_PAGE_TOKENS);
    }
    match std::str::from_utf8(&bytes) {
        Ok(text) => text_tokens(text),
        Err(_) => ceil_div(bytes.len() as i64, 4),
    }
}

/// The most pages a PDF is counted at (a page count in a file is the
/// sender's to write).
const MAX_PDF_PAGES: i64 = 100_000;

/// A PDF's pages: its page objects or its page tree's count, whichever is
/// more (at most [`MAX_PDF_PAGES`]); one per 3,000 bytes when neither can
/// be read (compressed).
fn pdf_pages(pdf: &[u8]) -> i64 {
    let mut pages = 0i64;
    let mut counted = 0i64;
    for at in 0..pdf.len() {
        let rest = &pdf[at..];
        for marker in [&b"/Type /Page"[..], b"/Type/Page"] {
            if rest.starts_with(marker) && rest.get(marker.len()) != Some(&b's') {
                pages = (pages + 1).min(MAX_PDF_PAGES);
            }
        }
        if rest.starts_with(b"/Count ") {
            let digits: Vec<u8> = rest[7..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .copied()
                .collect();
            if !digits.is_empty() {
                // A count too large for a number is as large as counts go.
                let n: i64 = std::str::from_utf8(&digits)
                    .ok()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(MAX_PDF_PAGES);
                counted = counted.max(n.min(MAX_PDF_PAGES));
            }
        }
    }
    let found = pages.max(counted).min(MAX_PDF_PAGES);
    if found > 0 {
        found
    } else {
        ceil_div(pdf.len() as i64, 3_000).clamp(1, MAX_PDF_PAGES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        bytes.extend([8, 6, 0, 0, 0]);
        bytes
    }

    const GPT_4O: ImageRule = ImageRule::OpenAiTiles {
        base: 85,
        per_tile: 170,
    };

    #[test]
    fn openai_tiles_follow_the_published_examples() {
        // OpenAI's vision guide: 1024×1024 at high detail is 765 tokens,
        // 2048×4096 is 1105, and low detail is the base alone.
        assert_eq!(GPT_4O.tokens(Some((1024, 1024)), false), 765);
        assert_eq!(GPT_4O.tokens(Some((2048, 4096)), false), 1105);
        assert_eq!(GPT_4O.tokens(Some((4096, 8192)), true), 85);
        // A small image is not scaled up: one tile.
        assert_eq!(GPT_4O.tokens(Some((300, 200)), false), 255);
        // Unknown size: the most tiles the rules allow (2 × 4).
        assert_eq!(GPT_4O.tokens(None, false), 85 + 8 * 170);
        let mini = ImageRule::for_target(ProviderKind::Openai, "gpt-4o-mini");
        assert_eq!(mini.tokens(Some((1024, 1024)), false), 2833 + 4 * 5667);
        let o1 = ImageRule::for_target(ProviderKind::Openai, "o1");
        assert_eq!(o1.tokens(Some((1024, 1024)), false), 75 + 4 * 150);
    }

    #[test]
    fn openai_patches_follow_the_published_examples() {
        // OpenAI's vision guide: 1024×1024 is 1024 patches; 1800×2400 is
        // scaled to 1056×1408, 1452 patches; then the model's multiplier.
        assert_eq!(openai_patches(1024, 1024), 1024);
        assert_eq!(openai_patches(1800, 2400), 1452);
        let mini = ImageRule::for_target(ProviderKind::Openai, "gpt-4.1-mini");
        assert_eq!(
            mini,
            ImageRule::OpenAiPatches {
                multiplier_milli: 1620
            }
        );
        assert_eq!(mini.tokens(Some((1024, 1024)), false), 1659);
        let nano = ImageRule::for_target(ProviderKind::Openai, "gpt-4.1-nano");
        assert_eq!(nano.tokens(None, false), ceil_div(1536 * 2460, 1000));
    }

    #[test]
    fn anthropic_images_follow_the_published_formula() {
        // Anthropic's vision guide: tokens = width × height / 750; a
        // 1092×1092 image is about 1,590, a 200×200 one about 54.
        let rule = ImageRule::for_target(ProviderKind::Anthropic, "claude-sonnet-4-0");
        assert_eq!(rule.tokens(Some((1092, 1092)), false), 1590);
        assert_eq!(rule.tokens(Some((200, 200)), false), 54);
        // Larger ones are scaled down, to at most ~1,600 tokens.
        assert_eq!(rule.tokens(Some((4000, 3000)), false), 1600);
        assert_eq!(rule.tokens(None, false), 1600);
    }

    #[test]
    fn gemini_images_follow_the_published_rule() {
        // Gemini: 258 tokens up to 384 px a side, else 258 per 768-px tile.
        let rule = ImageRule::for_target(ProviderKind::Gemini, "gemini-2.0-flash");
        assert_eq!(rule.tokens(Some((384, 300)), false), 258);
        assert_eq!(rule.tokens(Some((1024, 1024)), false), 4 * 258);
        assert_eq!(rule.tokens(None, false), 16 * 258);
    }

    #[test]
    fn image_sizes_are_read_from_their_headers() {
        assert_eq!(image_size(&png(640, 480)), Some((640, 480)));
        let mut gif = b"GIF89a".to_vec();
        gif.extend(300u16.to_le_bytes());
        gif.extend(200u16.to_le_bytes());
        assert_eq!(image_size(&gif), Some((300, 200)));
        // A JPEG with an APP0 segment before its frame header.
        let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0, 0];
        jpeg.extend([0xff, 0xc0, 0x00, 0x11, 8]);
        jpeg.extend(1080u16.to_be_bytes()); // height
        jpeg.extend(1920u16.to_be_bytes()); // width
        assert_eq!(image_size(&jpeg), Some((1920, 1080)));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X".to_vec();
        webp.extend([0; 8]);
        webp.extend([0xff, 0x03, 0x00, 0xff, 0x01, 0x00]); // 1024 × 512
        assert_eq!(image_size(&webp), Some((1024, 512)));
        assert_eq!(image_size(b"not an image"), None);
    }

    #[test]
    fn text_counts_every_part_role_and_schema() {
        let plain = prompt_tokens(
            &body(json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}]})),
            &[],
        );
        let with_tools = prompt_tokens(
            &body(
                json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}],
                "tools": [{"type": "function", "function": {"name": "lookup",
                    "description": "x".repeat(4000),
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}]}),
            ),
            &[],
        );
        assert!(with_tools >= plain + 1000, "{plain} → {with_tools}");
        let with_format = prompt_tokens(
            &body(
                json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "answer",
                    "schema": {"type": "object", "description": "y".repeat(2000)}}}}),
            ),
            &[],
        );
        assert!(with_format >= plain + 500, "{plain} → {with_format}");
        let parts = prompt_tokens(
            &body(json!({"messages": [{"role": "user", "content": [
                {"type": "text", "text": "a".repeat(400)}, {"type": "text", "text": "b".repeat(400)}]}]})),
            &[],
        );
        assert!(parts >= 200, "{parts}");
        // Sampling parameters cost nothing.
        let tuned = prompt_tokens(
            &body(
                json!({"model": "m", "messages": [{"role": "user", "content": "hello there"}],
                "temperature": 0.5, "max_tokens": 10, "stop": ["x"], "user": "someone"}),
            ),
            &[],
        );
        assert_eq!(tuned, plain);
    }

    #[test]
    fn text_is_about_four_ascii_characters_a_token_and_one_per_other() {
        assert_eq!(text_tokens(""), 0);
        assert_eq!(text_tokens("abcd"), 1);
        assert_eq!(text_tokens("abcde"), 2);
        assert_eq!(text_tokens("日本語"), 3);
    }

    #[test]
    fn images_count_by_the_dearest_target_rule() {
        let url = format!("data:image/png;base64,{}", b64(&png(1024, 1024)));
        let request = body(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url}}]}]}));
        let text_only = prompt_tokens(
            &body(json!({"messages": [{"role": "user", "content": []}]})),
            &[],
        );
        let openai = prompt_tokens(&request, &[GPT_4O]);
        assert_eq!(openai - text_only, 765);
        let anthropic = ImageRule::Anthropic;
        let both = prompt_tokens(&request, &[GPT_4O, anthropic]);
        assert_eq!(both - text_only, 1399, "1024² / 750, the dearer");
        // A linked image of unknown size counts at the rule's bound.
        let linked = body(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}]}]}));
        assert_eq!(prompt_tokens(&linked, &[GPT_4O]) - text_only, 85);
        // Anthropic's own image blocks.
        let block = body(json!({"messages": [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b64(&png(200, 200))}}]}]}));
        assert_eq!(prompt_tokens(&block, &[anthropic]) - text_only, 54);
    }

    #[test]
    fn audio_counts_its_duration_or_a_bound() {
        // A WAV header: 16 kHz mono 16-bit, so 32,000 bytes a second.
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0".to_vec();
        wav.extend(16_000u32.to_le_bytes());
        wav.extend(32_000u32.to_le_bytes());
        wav.extend([2, 0, 16, 0]);
        wav.resize(32_000 * 3, 0);
        assert_eq!(audio_tokens(&b64(&wav), Some("wav")), 3 * 32);
        // Anything else: at most 1,000 bytes a second.
        assert_eq!(audio_tokens(&b64(&[0; 10_000]), Some("mp3")), 10 * 32);
    }

    #[test]
    fn files_count_pages_or_text_or_the_reference_bound() {
        let pdf = b"%PDF-1.4\n1 0 obj << /Type /Pages /Count 3 >>\n2 0 obj << /Type /Page >>\n";
        assert_eq!(inline_file_tokens(&b64(pdf)), 3 * PDF_PAGE_TOKENS);
        let compressed = [b"%PDF-1.7\n".as_slice(), &[0u8; 8_991]].concat();
        assert_eq!(inline_file_tokens(&b64(&compressed)), 3 * PDF_PAGE_TOKENS);
        assert_eq!(inline_file_tokens(&b64(&b"word ".repeat(100))), 125);
        let part = json!({"type": "file", "file": {"file_id": "file-abc"}});
        assert_eq!(
            media_tokens(part.as_object().unwrap(), GPT_4O),
            Some(FILE_REFERENCE_TOKENS)
        );
        let inline = json!({"type": "file", "file": {"filename": "a.pdf",
            "file_data": format!("data:application/pdf;base64,{}", b64(pdf))}});
        assert_eq!(
            media_tokens(inline.as_object().unwrap(), GPT_4O),
            Some(3 * PDF_PAGE_TOKENS)
        );
    }

    #[test]
    fn hostile_media_neither_panics_nor_wraps() {
        // Multi-byte characters where base64 was expected end the data:
        // an image of unknown size counts at the rule's largest, audio at
        // its one-second minimum.
        for data in ["abcé", "é", "ab\u{1F600}cd", "data:image/png;base64,abcé"] {
            let part = json!({"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}});
            assert_eq!(
                media_tokens(part.as_object().unwrap(), GPT_4O),
                Some(85 + 8 * 170),
                "{data}"
            );
            assert_eq!(audio_tokens(data, Some("wav")), AUDIO_TOKENS_PER_SECOND);
        }
        assert_eq!(
            inline_file_tokens("abcé"),
            0,
            "nothing before the é decodes"
        );
        // A page count chosen to overflow is clamped.
        let pdf = b"%PDF-1.4 << /Type /Pages /Count 9223372036854775807 >>";
        assert_eq!(
            inline_file_tokens(&b64(pdf)),
            MAX_PDF_PAGES * PDF_PAGE_TOKENS
        );
        let huge = b"%PDF-1.4 << /Count 99999999999999999999999 >>";
        assert_eq!(
            inline_file_tokens(&b64(huge)),
            MAX_PDF_PAGES * PDF_PAGE_TOKENS
        );
        let many = json!({"messages": [{"role": "user", "content": (0..3).map(|_| json!(
            {"type": "file", "file": {"file_data": format!("data:application/pdf;base64,{}", b64(pdf))}}
        )).collect::<Vec<_>>()}]});
        assert!(prompt_tokens(many.as_object().unwrap(), &[]) > 0);
        // The URL-safe alphabet is read too.
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(png(640, 480));
        assert_eq!(
            image_size(&decode_head(&url_safe, SNIFF_CHARS)),
            Some((640, 480))
        );
    }

    #[test]
    fn embeddings_count_strings_and_token_arrays() {
        assert_eq!(embedding_tokens(&json!("abcdefgh")), 2);
        assert_eq!(embedding_tokens(&json!(["abcd", "abcd"])), 2);
        assert_eq!(embedding_tokens(&json!([1, 2, 3])), 3);
        assert_eq!(embedding_tokens(&json!([[1, 2], [3]])), 3);
    }
}
