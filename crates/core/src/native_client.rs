//! The user's own client (`ssh`, `psql`, ...), started against the local port.

use std::path::{Path, PathBuf};

use crate::error::{CoreError, Result};

/// What to start once the tunnel is up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientChoice {
    /// The protocol's default template (none for plain TCP).
    Default,
    /// A template such as `ssh -p {port} admin@{host}`.
    Template(String),
    /// Start nothing; the session stays up until closed.
    None,
}

/// One protocol's client: its label, its command template, and whether it needs a terminal.
struct Known {
    label: &'static str,
    template: &'static str,
    /// A text client, which the desktop app opens in a terminal window of its own.
    in_terminal: bool,
}

/// The one table of clients per protocol. Placeholders: `{host}`, `{port}`, `{resource}`,
/// `{kubeconfig}`.
fn known(protocol: &str) -> Option<Known> {
    let (label, template, in_terminal) = match protocol {
        // HostKeyAlias pins the host key per resource, whatever local port it gets.
        "ssh" => (
            "ssh",
            "ssh -p {port} -o HostKeyAlias=sallyport-{resource} {host}",
            true,
        ),
        "postgres" => ("psql", "psql -h {host} -p {port}", true),
        "mysql" => ("mysql", "mysql -h {host} -P {port} --protocol=TCP", true),
        "kubernetes" => ("kubectl", "kubectl --kubeconfig {kubeconfig}", true),
        "rdp" => ("xfreerdp", "xfreerdp /v:{host}:{port}", false),
        // The desktop's browser, through the tunnel's local port.
        "http" => ("Open in browser", "xdg-open http://{host}:{port}/", false),
        _ => return None,
    };
    Some(Known {
        label,
        template,
        in_terminal,
    })
}

/// Default command template per protocol, as the CLI runs it (in its own terminal).
pub fn default_template(protocol: &str) -> Option<&'static str> {
    known(protocol).map(|k| k.template)
}

/// Programs that hand their argument to another application and return at once (the browser
/// outlives `xdg-open`): a session started with one lasts until it is closed, not until the
/// program exits.
const OPENERS: &[&str] = &["xdg-open"];

/// Whether `command` (a client command line) starts an opener (see [`OPENERS`]).
pub fn hands_off(command: &str) -> bool {
    let program = command.split_whitespace().next().unwrap_or_default();
    let name = program.rsplit('/').next().unwrap_or_default();
    OPENERS.contains(&name)
}

/// Where a client starts: in the caller's terminal (the CLI), or on a desktop where a text
/// client needs a terminal window of its own (the app).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Terminal,
    Desktop,
}

/// The program that opens a terminal window on a Debian desktop.
const TERMINAL: &str = "x-terminal-emulator";

/// One "connect with" choice.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, ts_rs::TS)]
pub struct ClientOption {
    pub label: String,
    /// A command template; `None` opens the tunnel only.
    pub template: Option<String>,
}

/// "Connect with" choices for `protocol` on `face`, offered only when their programs are on
/// PATH; the first is the default, the last opens the tunnel only.
pub fn choices(protocol: &str, face: Face) -> Vec<ClientOption> {
    let mut choices = Vec::new();
    if let Some(k) = known(protocol) {
        let program = k.template.split_whitespace().next().unwrap_or_default();
        let wrap = face == Face::Desktop && k.in_terminal;
        let available =
            find_program(program).is_some() && (!wrap || find_program(TERMINAL).is_some());
        if available {
            choices.push(if wrap {
                ClientOption {
                    label: format!("{} in a terminal", k.label),
                    template: Some(format!("{TERMINAL} -e {}", k.template)),
                }
            } else {
                ClientOption {
                    label: k.label.to_owned(),
                    template: Some(k.template.to_owned()),
                }
            });
        }
    }
    choices.push(ClientOption {
        label: "Tunnel only (no client)".into(),
        template: None,
    });
    choices
}

impl ClientChoice {
    /// What a "connect with" choice launches (`None`: the tunnel only).
    pub fn from_template(template: Option<String>) -> Self {
        match template {
            Some(t) => ClientChoice::Template(t),
            None => ClientChoice::None,
        }
    }

    /// `Default` made concrete for `face`: the CLI keeps it (a missing default client is an
    /// error before any tunnel), the app takes its first choice.
    pub fn resolve(self, protocol: &str, face: Face) -> Self {
        match (self, face) {
            (ClientChoice::Default, Face::Desktop) => {
                let first = choices(protocol, face).into_iter().next();
                ClientChoice::from_template(first.and_then(|c| c.template))
            }
            (choice, _) => choice,
        }
    }
}

/// A client command ready to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The command line as the user would read it.
    pub display: String,
}

/// Resolve the template for `protocol` (or the user's) into a command whose program exists,
/// before any tunnel is opened.
pub fn prepare(
    choice: &ClientChoice,
    protocol: &str,
    resource: &str,
) -> Result<Option<(String, PathBuf)>> {
    let template = match choice {
        ClientChoice::None => return Ok(None),
        ClientChoice::Template(t) => t.clone(),
        ClientChoice::Default => match default_template(protocol) {
            Some(t) => t.to_owned(),
            None => return Ok(None),
        },
    };
    let words = shlex::split(&template)
        .filter(|w| !w.is_empty())
        .ok_or_else(|| {
            CoreError::Client(format!("cannot parse the client command {template:?}"))
        })?;
    let program = find_program(&words[0]).ok_or_else(|| CoreError::ClientMissing {
        program: words[0].clone(),
    })?;
    let _ = resource;
    Ok(Some((template, program)))
}

/// Fill the template's placeholders for a session on `port`.
pub fn expand(
    template: &str,
    program: &Path,
    port: u16,
    resource: &str,
    kubeconfig: Option<&Path>,
) -> Result<ClientCommand> {
    let kube = kubeconfig
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let words = shlex::split(template).ok_or_else(|| {
        CoreError::Client(format!("cannot parse the client command {template:?}"))
    })?;
    let args: Vec<String> = words
        .iter()
        .skip(1)
        .map(|w| {
            w.replace("{host}", "127.0.0.1")
                .replace("{port}", &port.to_string())
                .replace("{resource}", resource)
                .replace("{kubeconfig}", &kube)
        })
        .collect();
    let display = std::iter::once(words[0].clone())
        .chain(args.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(ClientCommand {
        program: program.to_owned(),
        args,
        display,
    })
}

/// A kubeconfig pointing kubectl at the local port.
pub fn write_kubeconfig(dir: &Path, resource: &str, port: u16) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("kubeconfig-{resource}.yaml"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {resource}\n  cluster:\n    server: https://127.0.0.1:{port}\n    tls-server-name: kubernetes\n    insecure-skip-tls-verify: true\ncontexts:\n- name: {resource}\n  context:\n    cluster: {resource}\n    user: {resource}\ncurrent-context: {resource}\nusers:\n- name: {resource}\n  user: {{}}\n"
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The executable `name` (a path, or a name looked up on PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_placeholders() {
        let cmd = expand(
            "psql -h {host} -p {port} -c 'select 1'",
            Path::new("/usr/bin/psql"),
            5433,
            "db",
            None,
        )
        .unwrap();
        assert_eq!(
            cmd.args,
            ["-h", "127.0.0.1", "-p", "5433", "-c", "select 1"]
        );
        assert_eq!(default_template("tcp"), None);
        assert!(default_template("ssh").unwrap().contains("{port}"));
    }

    #[test]
    fn a_missing_program_is_a_clear_error() {
        let err = prepare(
            &ClientChoice::Template("definitely-not-a-program-xyz {port}".into()),
            "tcp",
            "r",
        )
        .unwrap_err();
        assert_eq!(err.code(), sallyport_protocol::Code::ClientMissing);
        assert!(err.to_string().contains("definitely-not-a-program-xyz"));
        assert_eq!(prepare(&ClientChoice::Default, "tcp", "r").unwrap(), None);
        assert_eq!(prepare(&ClientChoice::None, "ssh", "r").unwrap(), None);
    }

    #[test]
    fn an_http_resource_opens_in_the_browser() {
        let template = default_template("http").unwrap();
        let cmd = expand(template, Path::new("/usr/bin/xdg-open"), 8080, "web", None).unwrap();
        assert_eq!(cmd.args, ["http://127.0.0.1:8080/"]);
        assert!(hands_off(&cmd.display) && !hands_off("ssh -p 1 127.0.0.1"));
        let choices = choices("http", Face::Desktop);
        if find_program("xdg-open").is_some() {
            assert_eq!(choices[0].label, "Open in browser");
            assert_eq!(choices[0].template.as_deref(), Some(template));
        } else {
            assert_eq!(choices.len(), 1, "only the tunnel without xdg-open");
        }
    }

    #[test]
    fn choices_end_with_the_tunnel_only_and_offer_what_is_installed() {
        for face in [Face::Terminal, Face::Desktop] {
            let tcp = choices("tcp", face);
            assert_eq!(tcp.len(), 1);
            assert_eq!(tcp[0].template, None);
            assert_eq!(
                ClientChoice::Default.resolve("tcp", Face::Desktop),
                ClientChoice::None
            );
        }
        // A protocol's client is offered only if its program is on PATH.
        let ssh = choices("ssh", Face::Terminal);
        assert_eq!(ssh.len() == 2, find_program("ssh").is_some());
        // The CLI keeps the default, so that a missing client is an error before any tunnel.
        assert_eq!(
            ClientChoice::Default.resolve("ssh", Face::Terminal),
            ClientChoice::Default
        );
    }
}
