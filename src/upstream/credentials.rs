//! An upstream's credentials, sent as HTTP Basic auth: from its URL (`https://user:key@host`,
//! taken out of the request line), and from a node's cookie file (`rpccookiefile`, Bitcoin
//! Core's `<datadir>/.cookie`: the `__cookie__:<random>` it writes at every start). The
//! cookie is read at start, and again before each health probe when the file has changed,
//! so that a node restarted with a new cookie is reached again at the next probe, with no
//! restart of Manifold.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use http::HeaderValue;

use crate::config::basic_auth;

#[derive(Debug)]
pub struct CookieAuth {
    path: PathBuf,
    /// The `Authorization` value from the file's last readable content.
    header: ArcSwapOption<HeaderValue>,
    /// When the file was last read (its modification time), to read it only when changed.
    read_at: Mutex<Option<SystemTime>>,
}

impl CookieAuth {
    pub fn new(path: PathBuf) -> Self {
        let auth = Self {
            path,
            header: ArcSwapOption::empty(),
            read_at: Mutex::new(None),
        };
        auth.refresh();
        auth
    }

    /// The header to send now (`None` while the file has never been readable).
    pub fn header(&self) -> Option<HeaderValue> {
        self.header.load().as_deref().cloned()
    }

    /// Read the file again if it changed. A small local file: read in place.
    pub fn refresh(&self) {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        {
            let mut read_at = self.read_at.lock().unwrap_or_else(|e| e.into_inner());
            if modified.is_none() || *read_at == modified {
                return;
            }
            *read_at = modified;
        }
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return;
        };
        if let Some(value) = basic_auth(text.trim()) {
            self.header.store(Some(std::sync::Arc::new(value)));
        }
    }
}

/// Take `user:password` out of `url` as an `Authorization: Basic` header (`None`: there
/// were none, or they are not valid header text, and then they stay).
pub(super) fn take_credentials(url: &mut url::Url) -> Option<HeaderValue> {
    if url.username().is_empty() && url.password().is_none() {
        return None;
    }
    let user = percent_decode(url.username());
    let pass = url.password().map(percent_decode).unwrap_or_default();
    let value = basic_auth(&format!("{user}:{pass}"))?;
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(value)
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn read_at_start_and_again_when_the_node_writes_a_new_one() {
        let dir = std::env::temp_dir().join(format!("manifold-cookie-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".cookie");
        let auth = CookieAuth::new(path.clone());
        assert!(auth.header().is_none(), "no file yet");
        std::fs::write(&path, "__cookie__:one\n").unwrap();
        auth.refresh();
        let basic = |s: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(s)
            )
        };
        assert_eq!(auth.header().unwrap(), basic("__cookie__:one").as_str());
        // A restart writes a new one (a later modification time).
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, "__cookie__:two").unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(1);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        auth.refresh();
        assert_eq!(auth.header().unwrap(), basic("__cookie__:two").as_str());
        // Gone while the node is down: the last one is kept.
        std::fs::remove_file(&path).unwrap();
        auth.refresh();
        assert_eq!(auth.header().unwrap(), basic("__cookie__:two").as_str());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
