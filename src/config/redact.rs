//! Showing URLs without their secrets.
//!
//! Providers put API keys in the userinfo (`https://user:key@host`), in a path segment
//! (`/v2/<key>`, `/<token>/`) or in the query (`?apikey=`). A URL is shown with credentials,
//! query values, key-like path segments and anything that came from `${VAR}` replaced by
//! `***`. Over-redacting a harmless segment costs little; leaking a key costs a lot.

use url::Url;

use super::interpolate::Secrets;

pub fn redact_url(url: &Url, secrets: &Secrets) -> String {
    let mut out = format!("{}://", url.scheme());
    if !url.username().is_empty() || url.password().is_some() {
        out.push_str("***@");
    }
    if let Some(host) = url.host_str() {
        out.push_str(host);
    }
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    let path = url.path();
    if path != "/" && !path.is_empty() {
        for seg in path.trim_start_matches('/').split('/') {
            out.push('/');
            // The URL parser percent-encodes what a secret may contain (spaces, quotes,
            // non-ASCII): compare the decoded text.
            let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
            if looks_like_key(&decoded)
                || secrets.contains_any(&decoded)
                || secrets.contains_any(seg)
            {
                out.push_str("***");
            } else {
                out.push_str(seg);
            }
        }
    }
    if url.query().is_some() {
        let names: Vec<String> = url.query_pairs().map(|(k, _)| format!("{k}=***")).collect();
        out.push('?');
        out.push_str(&names.join("&"));
    }
    secrets.redact(&out)
}

/// The parts of `url` that `redact_url` hides, as they appear in it and decoded: what an
/// upstream's own words may echo back (an error quoting the request URL), to be hidden there
/// too.
pub fn url_secret_parts(url: &Url, secrets: &Secrets) -> Vec<String> {
    let mut parts = Vec::new();
    let mut both = |raw: &str| {
        let decoded = percent_encoding::percent_decode_str(raw)
            .decode_utf8_lossy()
            .into_owned();
        if decoded != raw {
            parts.push(decoded);
        }
        parts.push(raw.to_string());
    };
    if !url.username().is_empty() {
        both(url.username());
    }
    if let Some(p) = url.password() {
        both(p);
    }
    for seg in url.path().trim_start_matches('/').split('/') {
        let decoded = percent_encoding::percent_decode_str(seg).decode_utf8_lossy();
        if looks_like_key(&decoded) || secrets.contains_any(&decoded) || secrets.contains_any(seg) {
            both(seg);
        }
    }
    if let Some(q) = url.query() {
        for pair in q.split('&') {
            if let Some((_, v)) = pair.split_once('=') {
                if !v.is_empty() {
                    both(v);
                }
            }
        }
    }
    parts
}

/// A long token of letters and digits: an API key, not a word like `v2` or `mainnet`.
fn looks_like_key(seg: &str) -> bool {
    seg.len() >= 16
        && seg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && seg.chars().any(|c| c.is_ascii_digit())
        && seg.chars().any(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(u: &str) -> String {
        redact_url(&Url::parse(u).unwrap(), &Secrets::default())
    }

    #[test]
    fn keeps_plain_urls() {
        assert_eq!(r("http://127.0.0.1:8545"), "http://127.0.0.1:8545");
        assert_eq!(
            r("https://ethereum-rpc.publicnode.com/"),
            "https://ethereum-rpc.publicnode.com"
        );
        assert_eq!(
            r("https://rpc.example.io/eth/mainnet"),
            "https://rpc.example.io/eth/mainnet"
        );
    }

    #[test]
    fn hides_credentials_keys_and_query_values() {
        assert_eq!(r("https://u:p@h.io/x"), "https://***@h.io/x");
        assert_eq!(
            r("https://mainnet.infura.io/v3/0123456789abcdef0123456789abcdef"),
            "https://mainnet.infura.io/v3/***"
        );
        assert_eq!(
            r("https://h.io/rpc?apikey=abc&x=1"),
            "https://h.io/rpc?apikey=***&x=***"
        );
    }

    /// `https://h.io/k/${K}` with `K` set to `value`: the URL and the secrets it holds.
    fn interpolated(value: &'static str) -> (Url, Secrets) {
        let mut v: toml::Value = toml::Value::String("https://h.io/k/${K}".into());
        let mut secrets = Secrets::default();
        let env = move |_: &str| Some(value.to_string());
        let mut errors = vec![];
        super::super::interpolate::interpolate(
            &mut v,
            &super::super::error::KeyPath::root("f"),
            &env,
            &mut secrets,
            &mut errors,
        );
        (Url::parse(v.as_str().unwrap()).unwrap(), secrets)
    }

    #[test]
    fn hides_interpolated_values_the_url_parser_encoded() {
        let (url, secrets) = interpolated("a b\"é");
        assert_ne!(url.path(), "/k/a b\"é", "the parser encoded it");
        assert_eq!(redact_url(&url, &secrets), "https://h.io/k/***");
    }

    #[test]
    fn hides_interpolated_values_even_when_short() {
        let (url, secrets) = interpolated("short");
        assert_eq!(redact_url(&url, &secrets), "https://h.io/k/***");
    }
}
