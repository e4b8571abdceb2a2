//! How resources' values cross to the WASM client with the page: JSON,
//! decoded from bytes, as server functions decode their answers
//! (`serde_json::from_slice`). Decoding from text instead would build a
//! second JSON decoder for each type into the WASM.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// The codec of resources' values (see [`crate::app`]'s `resource`).
pub struct ResourceJson;

impl<T: Serialize> leptos::server::codee::Encoder<T> for ResourceJson {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> leptos::server::codee::Decoder<T> for ResourceJson {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(value: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server_fns::billing::Page;
    use leptos::server::codee::{Decoder, Encoder};

    #[test]
    fn a_value_reads_back_as_written() {
        let page = Page {
            items: vec![(i64::MAX, Some("a".to_string())), (i64::MIN, None)],
            page: 3,
            has_more: true,
        };
        let text = ResourceJson::encode(&page).unwrap();
        let back: Page<(i64, Option<String>)> = ResourceJson::decode(&text).unwrap();
        assert_eq!(back, page);
    }

    #[test]
    fn malformed_text_is_an_error() {
        let bad: Result<Page<i64>, _> = ResourceJson::decode("{\"items\": [");
        assert!(bad.is_err());
    }
}
