//! A Bitcoin node's own credentials (`rpcuser` and `rpcpassword`, or `rpccookiefile`), as
//! its operators write them in `bitcoin.conf`: HTTP Basic auth, never shown.

use std::path::PathBuf;

use http::header::AUTHORIZATION;
use http::{HeaderName, HeaderValue};
use url::Url;

use super::Validator;
use crate::config::basic_auth;
use crate::config::error::KeyPath;
use crate::config::file::FileUpstream;

#[derive(Debug, Default)]
pub(super) struct NodeAuth {
    pub cookie_file: Option<PathBuf>,
    /// The password, and the header value it makes: hidden wherever text is shown.
    pub secrets: Vec<String>,
}

impl Validator {
    /// Check the node credentials of `u` and add an `Authorization` header for
    /// `rpcuser`/`rpcpassword`. One source of credentials only: these, the URL's, or an
    /// `Authorization` header.
    pub(super) fn node_auth(
        &mut self,
        at: &KeyPath,
        u: &FileUpstream,
        url: &Url,
        headers: &mut Vec<(HeaderName, HeaderValue)>,
    ) -> NodeAuth {
        let mut auth = NodeAuth::default();
        let given = u.rpcuser.is_some() || u.rpcpassword.is_some() || u.rpccookiefile.is_some();
        if !given {
            return auth;
        }
        if !url.username().is_empty() || url.password().is_some() {
            self.fail(
                &at.key("url"),
                "holds credentials, and so do rpcuser/rpcpassword/rpccookiefile: give them once",
            );
        }
        if headers.iter().any(|(name, _)| name == AUTHORIZATION) {
            self.fail(
                &at.key("headers").key("Authorization"),
                "given, and so are rpcuser/rpcpassword/rpccookiefile: give credentials once",
            );
        }
        match (&u.rpcuser, &u.rpcpassword, &u.rpccookiefile) {
            (Some(user), Some(password), None) => {
                match basic_auth(&format!("{user}:{password}")) {
                    Some(value) => {
                        // The password, and the header's token that encodes it.
                        let token = value
                            .to_str()
                            .unwrap_or_default()
                            .trim_start_matches("Basic ");
                        auth.secrets = vec![password.clone(), token.to_string()];
                        headers.push((AUTHORIZATION, value));
                    }
                    None => self.fail(&at.key("rpcuser"), "not valid header text"),
                }
            }
            (None, None, Some(path)) => {
                let path = PathBuf::from(path);
                // The node writes it when it starts: missing now is no error (a home node
                // may start after Manifold), only said.
                if !path.exists() {
                    let warning = at.key("rpccookiefile").error(format!(
                        "{} does not exist (yet): the node writes it when it starts",
                        path.display()
                    ));
                    self.warnings.push(warning.to_string());
                }
                auth.cookie_file = Some(path);
            }
            (Some(_), None, _) => self.fail(&at.key("rpcpassword"), "required with rpcuser"),
            (None, Some(_), _) => self.fail(&at.key("rpcuser"), "required with rpcpassword"),
            (Some(_), Some(_), Some(_)) => self.fail(
                &at.key("rpccookiefile"),
                "given with rpcuser/rpcpassword: use one or the other",
            ),
            (None, None, None) => {}
        }
        auth
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn upstream(keys: &str) -> Result<Config, String> {
        let toml = format!(
            "[[chains]]\nname = \"btc\"\nfamily = \"bitcoin\"\n\
             genesis_hash = \"0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206\"\n\
             [[chains.upstreams]]\nname = \"a\"\n{keys}\n"
        );
        Config::from_toml(&toml, "t.toml", &|v| {
            (v == "PW").then(|| "s3cret".to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn credentials_once_and_the_password_never_shown() {
        let c =
            upstream("url = \"http://127.0.0.1:8332\"\nrpcuser = \"u\"\nrpcpassword = \"${PW}\"")
                .unwrap();
        let u = &c.chains[0].upstreams[0];
        assert!(u
            .headers
            .iter()
            .any(|(k, _)| k == http::header::AUTHORIZATION));
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(!c.redacted().to_string().contains("s3cret"));
        let cookie =
            upstream("url = \"http://127.0.0.1:8332\"\nrpccookiefile = \"/nonexistent/.cookie\"")
                .unwrap();
        assert!(cookie
            .warnings
            .iter()
            .any(|w| w.contains("rpccookiefile") && w.contains("does not exist")));
        for (keys, says) in [
            ("url = \"http://127.0.0.1:8332\"\nrpcuser = \"u\"", "rpcpassword: required with rpcuser"),
            ("url = \"http://127.0.0.1:8332\"\nrpcpassword = \"p\"", "rpcuser: required with rpcpassword"),
            ("url = \"http://x:y@127.0.0.1:8332\"\nrpcuser = \"u\"\nrpcpassword = \"p\"", "url: holds credentials"),
            ("url = \"http://127.0.0.1:8332\"\nrpcuser = \"u\"\nrpcpassword = \"p\"\nrpccookiefile = \"/c\"", "rpccookiefile: given with rpcuser"),
        ] {
            let e = upstream(keys).unwrap_err();
            assert!(e.contains(&format!("t.toml: chains[0].upstreams[0].{says}")), "{e}");
        }
    }
}
