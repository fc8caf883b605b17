//! Secrets kept out of what is shown: URLs with a password, keys.
//!
//! The one place that decides how a credential is hidden, for logs,
//! errors, `check-config` and `Debug` output alike.

/// `url` with the password (anything between the first `:` of the userinfo
/// and the last `@`) replaced by `***`, for logs and error messages. A
/// `user:password@host` that is not a URL at all hides everything before
/// the `@`; `file://` and `sendmail://` paths are shown as they are.
pub fn redact_url(url: &str) -> String {
    let (prefix, rest) = match url.split_once("://") {
        Some((scheme, _))
            if scheme.eq_ignore_ascii_case("file") || scheme.eq_ignore_ascii_case("sendmail") =>
        {
            return url.to_owned();
        }
        Some((scheme, rest)) => (format!("{scheme}://"), rest),
        None => (String::new(), url),
    };
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    let (userinfo, host) = (&rest[..at], &rest[at + 1..]);
    if prefix.is_empty() {
        // Not a URL at all: hide everything that could be credentials.
        return format!("***@{host}");
    }
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{prefix}{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Every `scheme://user:password@host` in `text` (a parser message quoting
/// a config line, say) with its password hidden by [`redact_url`]; URLs end
/// at whitespace or a quote.
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token_start = 0;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || c == '"' || c == '\'' {
            push_token(&mut out, &text[token_start..i]);
            out.push(c);
            token_start = i + c.len_utf8();
        }
    }
    push_token(&mut out, &text[token_start..]);
    out
}

/// Appends one whitespace-free token, its URL (from the scheme's first
/// letter on) redacted.
fn push_token(out: &mut String, token: &str) {
    let Some(i) = token.find("://") else {
        out.push_str(token);
        return;
    };
    let scheme_start = token[..i]
        .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .map_or(0, |p| p + 1);
    out.push_str(&token[..scheme_start]);
    out.push_str(&redact_url(&token[scheme_start..]));
}

/// Shows the first four characters of a secret and hides the rest.
pub fn mask(secret: &str) -> String {
    let shown: String = secret.chars().take(4).collect();
    format!("{shown}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_only() {
        assert_eq!(
            redact_url("smtp://bob:s3cret@mx.example:587"),
            "smtp://bob:***@mx.example:587"
        );
        assert_eq!(redact_url("smtp://bob:pa/ss@mx"), "smtp://bob:***@mx");
        assert_eq!(redact_url("smtp://mx.example"), "smtp://mx.example");
        assert_eq!(redact_url("bob:s3cret@mx"), "***@mx");
        assert_eq!(redact_url("file:///a:b@c"), "file:///a:b@c");
    }

    #[test]
    fn every_url_of_a_text_is_redacted() {
        assert_eq!(
            redact_urls_in("  7 | transport = \"smtps://a:b@c/\" and x(ftp://x@y) (pg://u:p/w@h)"),
            "  7 | transport = \"smtps://a:***@c/\" and x(ftp://x@y) (pg://u:***@h)"
        );
        assert_eq!(redact_urls_in("no url here"), "no url here");
        assert_eq!(mask("a296464ce012b8ab710a"), "a296…");
    }
}
