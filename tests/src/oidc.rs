//! A real OpenID provider for the single sign-on tests: `oidc-provider` from the npm registry
//! (tests/oidc: its package.json, package-lock.json and server.mjs), installed with `npm ci`
//! on first use and started on loopback; and a scripted user agent that signs a user in on the
//! provider's own pages (HTTP requests with cookies, as a browser would send them).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// `npm ci` once per test process (tests of one binary share the installation).
fn install() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut done = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if *done {
        return;
    }
    for tool in ["node", "npm"] {
        let found = Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the SSO tests need `{tool}` (Node.js 20 or later) on PATH to run the OpenID provider (tests/oidc); install Node.js"
        );
    }
    let dir = oidc_dir();
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .expect("npm runs");
        assert!(status.success(), "`npm ci` in {} failed", dir.display());
    }
    *done = true;
}

/// A provider process; stopped on drop (and by itself when this process ends: it exits when
/// its standard input closes).
pub struct Provider {
    pub issuer: String,
    child: Child,
}

impl Provider {
    /// Users: alice (dba), bob (marketing), carol (dba, ID tokens of `short_ttl` seconds).
    pub fn start(short_ttl: u64) -> Provider {
        Self::start_with(&[("OIDC_SHORT_TTL", &short_ttl.to_string())])
    }

    /// With server.mjs's environment: `PORT` (to start again at the same issuer URL, with
    /// new keys), `OIDC_ALG` (`ES256` signs ID tokens with the P-256 key), `OIDC_SHORT_TTL`.
    pub fn start_with(env: &[(&str, &str)]) -> Provider {
        install();
        let mut child = Command::new("node")
            .arg("server.mjs")
            .current_dir(oidc_dir())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node starts the OpenID provider");
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(issuer) = line.strip_prefix("OIDC_ISSUER=") {
                    let _ = tx.send(issuer.to_owned());
                }
            }
        });
        let issuer = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the OpenID provider (tests/oidc/server.mjs) started within 60 s");
        Provider { issuer, child }
    }

    pub fn settings(&self) -> sallyport_core::SsoSettings {
        sallyport_core::SsoSettings {
            issuer: self.issuer.clone(),
            client_id: CLIENT_ID.into(),
            scope: None,
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The client id server.mjs registers.
pub const CLIENT_ID: &str = "sallyport";

/// A browser, scripted: follows redirects, keeps cookies, and submits the provider's forms
/// (the device code confirmation, the login as `user`, the consent) until a page has none.
/// Returns the last page's URL and text.
pub async fn sign_in_as(start: &str, user: &str) -> (String, String) {
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut url = url::Url::parse(start).unwrap();
    let mut form: Option<Vec<(String, String)>> = None;
    for _ in 0..20 {
        let request = match form.take() {
            Some(fields) => {
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(fields)
                    .finish();
                http.post(url.clone())
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(body)
            }
            None => http.get(url.clone()),
        };
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        if response.status().is_redirection() {
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            url = url.join(&location).unwrap();
            continue;
        }
        let status = response.status();
        let page = response.text().await.unwrap();
        assert!(status.is_success(), "{url}: {status}: {page}");
        let Some((action, mut fields)) = first_form(&page) else {
            return (url.to_string(), page);
        };
        if fields.iter().any(|(name, _)| name == "login") {
            for (name, value) in fields.iter_mut() {
                match name.as_str() {
                    "login" => *value = user.to_owned(),
                    "password" => *value = "not-checked-by-the-dev-login".into(),
                    _ => {}
                }
            }
        }
        url = url.join(&action).unwrap();
        form = Some(fields);
    }
    panic!("the sign-in did not finish within 20 pages (at {url})");
}

/// The first form of a page: its action and its inputs' names and values.
fn first_form(page: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = page.find("<form")?;
    let end = page[start..]
        .find("</form>")
        .map_or(page.len(), |e| start + e);
    let form = &page[start..end];
    let tag_end = form.find('>')?;
    let action = attribute(&form[..tag_end], "action")?;
    let mut fields = Vec::new();
    let mut rest = &form[tag_end..];
    while let Some(i) = rest.find("<input") {
        let tag = &rest[i..];
        let close = tag.find('>').unwrap_or(tag.len());
        let tag_text = &tag[..close];
        if let Some(name) = attribute(tag_text, "name") {
            fields.push((name, attribute(tag_text, "value").unwrap_or_default()));
        }
        rest = &tag[close..];
    }
    Some((unescape(&action), fields))
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let key = format!("{name}=\"");
    let mut from = 0;
    // A whole attribute name: preceded by whitespace.
    while let Some(i) = tag[from..].find(&key) {
        let at = from + i;
        if tag[..at].ends_with(char::is_whitespace) {
            let value = &tag[at + key.len()..];
            return value.find('"').map(|e| unescape(&value[..e]));
        }
        from = at + key.len();
    }
    None
}

fn unescape(text: &str) -> String {
    text.replace("&amp;", "&")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
}
