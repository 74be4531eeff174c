//! The app's state and operations, with no Tauri in them: the commands and the tray call
//! these, and the logic lives in sallyport-core.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sallyport_core::bundle;
use sallyport_core::checkpoint::names;
use sallyport_core::history::{History, LaunchError, LaunchRecord};
use sallyport_core::logbuf::LaunchLogs;
use sallyport_core::{
    Checkpoint, ClientChoice, ClientProfile, CoreError, LaunchRequest, Launcher, Profile, Session,
    SessionInfo, StickyPorts, Tunables,
};
use sallyport_lab::{Lab, LabOptions};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, RwLock};

/// What the UI shows about the app itself.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStateView {
    pub router_url: String,
    pub profile: Profile,
    pub lab: bool,
    pub token_set: bool,
    pub version: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientOption {
    pub label: String,
    /// A command template, or `none` for a tunnel without a client.
    pub template: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceView {
    pub name: String,
    pub protocol: String,
    pub gateway: String,
    pub online: bool,
    pub sticky_port: Option<u16>,
    pub client_choices: Vec<ClientOption>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    pub router_url: String,
    pub profile: Profile,
    pub token_set: bool,
}

/// Settings of the app that are not in the client profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AppSettings {
    profile: Profile,
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            profile: Profile::Fast,
        }
    }
}

/// Where launches go: a configured router, or the embedded lab.
struct Connection {
    launcher: Arc<Launcher>,
    router_url: String,
    token: String,
    lab: bool,
}

pub struct Backend {
    home: PathBuf,
    connection: RwLock<Connection>,
    lab: tokio::sync::Mutex<Option<Lab>>,
    sessions: Mutex<Vec<Arc<Session>>>,
    history: History,
    logs: LaunchLogs,
    settings: Mutex<AppSettings>,
    changed: watch::Sender<u64>,
}

impl Backend {
    /// Connect to the configured router, or start the embedded lab when none is configured.
    pub async fn start(home: PathBuf, logs: LaunchLogs) -> Result<Self, CoreError> {
        let settings: AppSettings = std::fs::read(home.join("app.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut lab_slot = None;
        let connection = connect(&home, &mut lab_slot).await?;
        let (changed, _) = watch::channel(0);
        Ok(Self {
            history: History::new(home.join("history.jsonl")),
            home,
            connection: RwLock::new(connection),
            lab: tokio::sync::Mutex::new(lab_slot),
            sessions: Mutex::new(Vec::new()),
            logs,
            settings: Mutex::new(settings),
            changed,
        })
    }

    /// Bumped whenever sessions or history change (the tray and the UI follow it).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    pub async fn app_state(&self) -> AppStateView {
        let connection = self.connection.read().await;
        AppStateView {
            router_url: connection.router_url.clone(),
            profile: self.settings.lock().unwrap().profile,
            lab: connection.lab,
            token_set: !connection.token.is_empty(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    pub async fn resources(&self) -> Result<Vec<ResourceView>, CoreError> {
        let launcher = self.connection.read().await.launcher.clone();
        let ports = self.ports();
        let list = launcher.resources().await?;
        Ok(list
            .into_iter()
            .map(|r| ResourceView {
                sticky_port: ports.get(&r.name),
                client_choices: client_choices(&r.protocol),
                name: r.name,
                protocol: r.protocol,
                gateway: r.gateway,
                online: r.online,
            })
            .collect())
    }

    fn ports(&self) -> StickyPorts {
        StickyPorts::new(self.home.join("ports.json"))
    }

    /// Remember `port` for `resource`, or forget its port with `None`.
    pub fn set_sticky_port(&self, resource: &str, port: Option<u16>) -> Result<(), CoreError> {
        let Some(port) = port else {
            return self.ports().forget(resource);
        };
        if port < 1024 {
            return Err(CoreError::PortTaken {
                port,
                message: "ports below 1024 need privileges; choose 1024 or above".into(),
            });
        }
        self.ports().remember(resource, port)
    }

    /// Launch `resource`; every checkpoint of this launch is handed to `on_checkpoint` as it
    /// happens. The launch lands in the history either way.
    pub async fn launch(
        &self,
        resource: &str,
        port: Option<u16>,
        client: Option<String>,
        on_checkpoint: impl Fn(Checkpoint) + Send + 'static,
    ) -> Result<SessionInfo, CoreError> {
        let launcher = self.connection.read().await.launcher.clone();
        let profile = self.settings.lock().unwrap().profile;
        let launch_id = sallyport_core::new_launch_id();
        let started_unix_ms = unix_ms();

        let tunables = Tunables::from_env(profile)?;
        // Follow this launch's checkpoints on the shared stream.
        let mut stream = launcher.checkpoints().subscribe();
        let collected = Arc::new(Mutex::new(Vec::new()));
        let follower = {
            let launch_id = launch_id.clone();
            let collected = collected.clone();
            tokio::spawn(async move {
                while let Ok(c) = stream.recv().await {
                    if c.launch_id != launch_id {
                        continue;
                    }
                    let last = c.phase == names::READY || c.phase == names::FAILED;
                    collected.lock().unwrap().push(c.clone());
                    on_checkpoint(c);
                    if last {
                        break;
                    }
                }
            })
        };

        let mut request = LaunchRequest::new(resource, tunables);
        request.launch_id = Some(launch_id.clone());
        request.port = port;
        request.client = match client.as_deref() {
            None => default_choice(&self.resource_protocol(&launcher, resource).await),
            Some("none") => ClientChoice::None,
            Some(template) => ClientChoice::Template(template.to_owned()),
        };
        let result = launcher.launch(request).await;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), follower).await;
        let checkpoints = collected.lock().unwrap().clone();
        let total_ms = checkpoints.last().map_or(0.0, |c| c.total_ms);
        let record = LaunchRecord {
            launch_id: launch_id.clone(),
            resource: resource.to_owned(),
            profile: profile.as_str().to_owned(),
            started_unix_ms,
            outcome: if result.is_ok() { "ok" } else { "failed" }.to_owned(),
            error: result.as_ref().err().map(|e| LaunchError {
                code: e.code().to_owned(),
                message: e.to_string(),
            }),
            checkpoints,
            total_ms,
        };
        if let Err(e) = self.history.append(&record) {
            tracing::warn!(error = %e, "could not record the launch in the history");
        }
        let session = Arc::new(result.inspect_err(|_| self.bump())?);
        let info = session.info();
        self.sessions.lock().unwrap().push(session.clone());
        self.bump();
        Ok(info)
    }

    async fn resource_protocol(&self, launcher: &Launcher, resource: &str) -> String {
        match launcher.cache().get_fresh(resource) {
            Some(info) => info.protocol,
            None => launcher
                .resources()
                .await
                .ok()
                .and_then(|l| l.into_iter().find(|r| r.name == resource))
                .map_or_else(|| "tcp".into(), |r| r.protocol),
        }
    }

    /// Follow a session until it ends by itself, then drop it from the list.
    pub async fn supervise(self: &Arc<Self>, launch_id: &str) {
        let Some(session) = self.session(launch_id) else {
            return;
        };
        let end = session.wait_tunnel().await;
        tracing::info!(launch_id, ?end, "session ended");
        self.end_session(&session).await;
    }

    /// Close a session and take it off the list (and so off the tray).
    async fn end_session(&self, session: &Session) {
        session.close().await;
        self.sessions
            .lock()
            .unwrap()
            .retain(|s| s.launch_id() != session.launch_id());
        self.bump();
    }

    fn session(&self, launch_id: &str) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.launch_id() == launch_id)
            .cloned()
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.sessions
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.info())
            .collect()
    }

    pub async fn close_session(&self, launch_id: &str) -> Result<(), CoreError> {
        let session = self
            .session(launch_id)
            .ok_or_else(|| CoreError::Profile(format!("no active session {launch_id:?}")))?;
        self.end_session(&session).await;
        Ok(())
    }

    pub async fn close_all(&self) {
        let sessions: Vec<_> = self.sessions.lock().unwrap().drain(..).collect();
        for s in sessions {
            s.close().await;
        }
        if let Some(lab) = self.lab.lock().await.take() {
            lab.shutdown().await;
        }
    }

    pub fn history(&self) -> Vec<LaunchRecord> {
        self.history.records()
    }

    /// The last `n` distinct resources launched, newest first.
    pub fn recent_resources(&self, n: usize) -> Vec<String> {
        let mut seen = Vec::new();
        for r in self.history.records() {
            if !seen.contains(&r.resource) {
                seen.push(r.resource);
            }
            if seen.len() == n {
                break;
            }
        }
        seen
    }

    pub async fn settings(&self) -> SettingsView {
        let connection = self.connection.read().await;
        SettingsView {
            router_url: connection.router_url.clone(),
            profile: self.settings.lock().unwrap().profile,
            token_set: !connection.token.is_empty(),
        }
    }

    /// Save the settings; a new router URL or token reconnects (and stops the lab).
    pub async fn save_settings(
        &self,
        router_url: &str,
        profile: Profile,
        token: Option<String>,
    ) -> Result<(), CoreError> {
        {
            let mut settings = self.settings.lock().unwrap();
            settings.profile = profile;
            std::fs::create_dir_all(&self.home)?;
            std::fs::write(
                self.home.join("app.json"),
                serde_json::to_vec_pretty(&*settings).expect("settings serialize"),
            )?;
        }
        let current = self.connection.read().await.router_url.clone();
        let token = token.filter(|t| !t.trim().is_empty());
        if router_url == current && token.is_none() {
            return Ok(());
        }
        // Keep the pinned gateway keys of an existing profile; a lab profile is not kept.
        let profile_path = self.home.join("profile.toml");
        let mut client_profile = ClientProfile::load(&profile_path).unwrap_or(ClientProfile {
            router_url: router_url.to_owned(),
            ca_file: None,
            token: None,
            gateways: Default::default(),
            webrtc_udp: None,
            ice_servers: Vec::new(),
            lab: false,
        });
        client_profile.router_url = router_url.to_owned();
        client_profile.token = None;
        client_profile.validate()?;
        if let Some(token) = &token {
            sallyport_core::secrets::store_token(router_url, token.trim())?;
        }
        client_profile.save(&profile_path)?;
        let mut lab = self.lab.lock().await;
        let connection = connect(&self.home, &mut lab).await?;
        *self.connection.write().await = connection;
        self.bump();
        Ok(())
    }

    pub async fn export_bundle(&self, launch_id: &str) -> Result<PathBuf, CoreError> {
        let record = self
            .history
            .find(launch_id)
            .ok_or_else(|| CoreError::Profile(format!("no launch {launch_id:?} in the history")))?;
        let connection = self.connection.read().await;
        let profile: Profile = record.profile.parse().unwrap_or(Profile::Fast);
        let tunables =
            Tunables::from_env(profile).unwrap_or_else(|_| Tunables::for_profile(profile));
        bundle::write(
            &self.home.join("bundles"),
            &record,
            &tunables,
            &connection.router_url,
            &self.logs.lines(launch_id),
            &[connection.token.as_str()],
        )
    }
}

/// The user's router: a profile (not one `sallyport lab` wrote for its throwaway router)
/// with a token.
fn configured_router(home: &std::path::Path) -> Option<(ClientProfile, String)> {
    let profile = match ClientProfile::load(&home.join("profile.toml")) {
        Ok(profile) if !profile.lab => profile,
        Ok(_) => return None,
        Err(e) => {
            tracing::info!(error = %e, "no usable client profile");
            return None;
        }
    };
    match sallyport_core::secrets::token_for(&profile) {
        Ok(Some(token)) => Some((profile, token)),
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the router token");
            None
        }
    }
}

/// The configured router when there is a profile and a token, else a fresh embedded lab.
async fn connect(
    home: &std::path::Path,
    lab_slot: &mut Option<Lab>,
) -> Result<Connection, CoreError> {
    let ports = StickyPorts::new(home.join("ports.json"));
    if let Some((profile, token)) = configured_router(home) {
        if let Some(lab) = lab_slot.take() {
            lab.shutdown().await;
        }
        let launcher =
            Launcher::new(profile.clone(), &token, ports)?.with_state_dir(home.to_owned());
        return Ok(Connection {
            launcher: Arc::new(launcher),
            router_url: profile.router_url,
            token,
            lab: false,
        });
    }
    if lab_slot.is_none() {
        let lab = Lab::start(LabOptions::default())
            .await
            .map_err(CoreError::Profile)?;
        tracing::info!(router = %lab.router.url(), "no router configured; started the embedded lab");
        *lab_slot = Some(lab);
    }
    let lab = lab_slot.as_ref().expect("lab started above");
    let launcher = Launcher::new(lab.profile.clone(), &lab.client_token, ports)?
        .with_state_dir(home.to_owned());
    Ok(Connection {
        launcher: Arc::new(launcher),
        router_url: lab.router.url(),
        token: lab.client_token.clone(),
        lab: true,
    })
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// "Connect with" choices per protocol; the first is the default.
pub fn client_choices(protocol: &str) -> Vec<ClientOption> {
    let terminal = on_path("x-terminal-emulator");
    let mut choices = Vec::new();
    let mut add = |label: &str, template: &str| {
        choices.push(ClientOption {
            label: label.to_owned(),
            template: Some(template.to_owned()),
        })
    };
    match protocol {
        "ssh" if terminal => add(
            "ssh in a terminal",
            "x-terminal-emulator -e ssh -p {port} -o HostKeyAlias=sallyport-{resource} {host}",
        ),
        "postgres" if terminal => add(
            "psql in a terminal",
            "x-terminal-emulator -e psql -h {host} -p {port}",
        ),
        "mysql" if terminal => add(
            "mysql in a terminal",
            "x-terminal-emulator -e mysql -h {host} -P {port} --protocol=TCP",
        ),
        "kubernetes" if terminal => add(
            "kubectl shell",
            "x-terminal-emulator -e kubectl --kubeconfig {kubeconfig} get ns",
        ),
        "rdp" if on_path("xfreerdp") => add("xfreerdp", "xfreerdp /v:{host}:{port}"),
        _ => {}
    }
    choices.push(ClientOption {
        label: "Tunnel only (no client)".into(),
        template: Some("none".into()),
    });
    choices
}

fn default_choice(protocol: &str) -> ClientChoice {
    match client_choices(protocol)
        .into_iter()
        .next()
        .and_then(|c| c.template)
    {
        Some(t) if t != "none" => ClientChoice::Template(t),
        _ => ClientChoice::None,
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A sentence a user can act on, per error code.
pub fn hint_for(code: &str) -> &'static str {
    match code {
        "router_unreachable" => "Check the router URL in Settings and that the router is running.",
        "unauthorized" => "The router refused the token: paste a valid one in Settings.",
        "forbidden" => "Your token may not launch this resource; ask an administrator.",
        "controller_down" => "The resource's gateway is offline; try again when its dot is green.",
        "rrc_timeout" | "bad_state" | "timeout" => "The gateway did not answer in time; try again.",
        "seal_rejected" => "The gateway's key does not match the key pinned in your profile.",
        "target_refused" | "target_timeout" | "target_unreachable" => {
            "The gateway cannot reach this resource's target; tell its administrator."
        }
        "port_taken" => "Choose another local port for this resource.",
        "client_missing" => "Install that client, or pick another \"connect with\" option.",
        "unknown_resource" => "Refresh the resource list; it may have been removed.",
        "session_limit" => "The gateway has too many sessions; close one and try again.",
        "keyring_error" => "The OS keyring is not available; unlock it and try again.",
        _ => "Open the launch's timeline and export a diagnostic bundle for support.",
    }
}
