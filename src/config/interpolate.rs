//! `${VAR}` interpolation of string values from the environment.
//!
//! Interpolation runs on the parsed TOML tree, not on the file's text: a TOML syntax error
//! can then never print a secret, and every substituted value is remembered so that it can
//! be redacted wherever the configuration is shown (`Secrets`).

use toml::Value;

use super::error::{ConfigError, KeyPath};

/// Values that came from the environment; never shown.
#[derive(Default, Clone)]
pub struct Secrets(Vec<String>);

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secrets({} redacted)", self.0.len())
    }
}

impl Secrets {
    /// Replace every occurrence of a secret in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.0 {
            if !s.is_empty() {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }

    /// These secrets and `more` (short ones left out: a two-letter "secret" would blot out
    /// ordinary words), longest first, so that no secret is half replaced by a shorter one.
    pub fn with(&self, more: impl IntoIterator<Item = String>) -> Secrets {
        let mut all: Vec<String> = self
            .0
            .iter()
            .cloned()
            .chain(more.into_iter().filter(|s| s.len() >= 6))
            .collect();
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
        all.dedup();
        Secrets(all)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(String::is_empty)
    }

    pub fn contains_any(&self, text: &str) -> bool {
        self.0
            .iter()
            .any(|s| !s.is_empty() && text.contains(s.as_str()))
    }
}

/// Interpolate every string in `value` in place, reading variables through `env`.
pub fn interpolate(
    value: &mut Value,
    path: &KeyPath,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Secrets,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(s) => match substitute(s, env, secrets) {
            Ok(Some(new)) => *s = new,
            Ok(None) => {}
            Err(reason) => errors.push(path.error(reason)),
        },
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &path.index(i), env, secrets, errors);
            }
        }
        Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                interpolate(v, &path.key(k), env, secrets, errors);
            }
        }
        _ => {}
    }
}

/// `Ok(None)` when `s` has no `${`; `$${` stands for a literal `${`.
fn substitute(
    s: &str,
    env: &dyn Fn(&str) -> Option<String>,
    secrets: &mut Secrets,
) -> Result<Option<String>, String> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some((before, after)) = rest.split_once("${") {
        if let Some(literal) = before.strip_suffix('$') {
            // `$${` → literal `${`
            out.push_str(literal);
            out.push_str("${");
            rest = after;
            continue;
        }
        out.push_str(before);
        let Some((name, tail)) = after.split_once('}') else {
            return Err("unterminated `${` (write `$${` for a literal `${`)".into());
        };
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "`${{{name}}}` is not a valid environment variable reference"
            ));
        }
        match env(name) {
            Some(v) => {
                out.push_str(&v);
                secrets.0.push(v);
            }
            None => return Err(format!("environment variable `{name}` is not set")),
        }
        rest = tail;
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &str) -> (Result<Option<String>, String>, Secrets) {
        let mut secrets = Secrets::default();
        let env = |k: &str| match k {
            "KEY" => Some("s3cr3t".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        (substitute(s, &env, &mut secrets), secrets)
    }

    #[test]
    fn substitutes_and_remembers_secrets() {
        let (r, secrets) = run("https://x.io/v2/${KEY}?a=${KEY}");
        assert_eq!(r.unwrap().unwrap(), "https://x.io/v2/s3cr3t?a=s3cr3t");
        assert_eq!(secrets.redact("see s3cr3t here"), "see *** here");
        assert!(secrets.contains_any("/v2/s3cr3t"));
    }

    #[test]
    fn plain_strings_are_untouched() {
        assert_eq!(run("no vars $HOME").0.unwrap(), None);
    }

    #[test]
    fn escapes_and_empty_values() {
        assert_eq!(run("$${KEY}").0.unwrap().unwrap(), "${KEY}");
        assert_eq!(run("a${EMPTY}b").0.unwrap().unwrap(), "ab");
    }

    #[test]
    fn errors_name_the_variable() {
        assert!(run("${MISSING}")
            .0
            .unwrap_err()
            .contains("`MISSING` is not set"));
        assert!(run("${KEY").0.unwrap_err().contains("unterminated"));
        assert!(run("${1X}").0.unwrap_err().contains("not a valid"));
    }

    #[test]
    fn walks_tables_and_arrays_with_paths() {
        let mut v: Value = toml::from_str(
            r#"
            [[chains]]
            [[chains.upstreams]]
            url = "${NOPE}"
            "#,
        )
        .unwrap();
        let mut errors = vec![];
        let env = |_: &str| None;
        interpolate(
            &mut v,
            &KeyPath::root("f.toml"),
            &env,
            &mut Secrets::default(),
            &mut errors,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "f.toml: chains[0].upstreams[0].url: environment variable `NOPE` is not set"
        );
    }
}
