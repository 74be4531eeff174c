//! sallyport-service: the one app service. The desktop app (`src-tauri`, wiring only) and the
//! CLI (`sallyport`) both call it, so a launch from either lands in the same history, picks its
//! client the same way, and fails with the same code and hint. No Tauri in here.
//!
//! It owns what both faces share: where launches go (the configured router, or the embedded
//! lab), the settings, sticky-port rules, the list of running sessions and their supervision,
//! the history, and the diagnostic bundles.

mod types;
pub mod typescript;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use sallyport_core::bundle::{self, BundleView};
use sallyport_core::checkpoint::Observer;
use sallyport_core::history::{History, LaunchError, LaunchRecord, Outcome};
use sallyport_core::logbuf::LaunchLogs;
use sallyport_core::native_client;
use sallyport_core::profile::check_pin;
use sallyport_core::sso;
use sallyport_core::{
    Checkpoint, ClientChoice, ClientProfile, CoreError, Face, LaunchRequest, Launcher,
    PinnedGateway, Profile, Session, SessionInfo, SessionState, StickyPorts, Tunables,
};
use sallyport_lab::{Lab, LabOptions};
use sallyport_protocol::report::{GroupBy, LaunchList, LaunchQuery, LaunchStats, WhoAmI};
use sallyport_protocol::Code;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, RwLock};

pub use sallyport_core::Result;
pub use types::{AppStateView, CommandError, ImportView, ResourceView, SettingsView};

/// Where the service sends launches.
#[derive(Debug, Clone)]
pub enum Connect {
    /// The app: the configured router when `$SALLYPORT_HOME/profile.toml` names one (not a
    /// profile `sallyport lab` wrote) and a token is found, else an embedded lab of its own.
    RouterOrLab,
    /// The CLI: the router of this profile file, with its token; no lab.
    Profile(PathBuf),
}

/// How to start the service.
pub struct Options {
    /// `$SALLYPORT_HOME`: settings, sticky ports, history and bundles.
    pub home: PathBuf,
    pub face: Face,
    pub connect: Connect,
    /// The launch log lines for bundles (the app's tracing layer feeds them).
    pub logs: LaunchLogs,
}

impl Options {
    pub fn new(home: PathBuf, face: Face, connect: Connect) -> Self {
        Self {
            home,
            face,
            connect,
            logs: LaunchLogs::default(),
        }
    }
}

/// What to launch. `profile` defaults to the settings' profile.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    pub resource: String,
    pub port: Option<u16>,
    pub client: ClientChoice,
    pub profile: Option<Profile>,
    pub trickle: bool,
}

impl LaunchOptions {
    pub fn new(resource: &str) -> Self {
        Self {
            resource: resource.to_owned(),
            port: None,
            client: ClientChoice::Default,
            profile: None,
            trickle: true,
        }
    }
}

/// Settings of the app and the CLI that are not in the client profile (`app.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Settings {
    profile: Profile,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            profile: Profile::Fast,
        }
    }
}

/// The router launches go to, and the token they carry.
struct Connection {
    launcher: Arc<Launcher>,
    router_url: String,
    token: String,
    lab: bool,
    /// Send the router a report of each launch (the profile's `launch_reports`).
    launch_reports: bool,
    /// Who the token is at the router, once asked.
    whoami: Arc<tokio::sync::OnceCell<WhoAmI>>,
    /// Keeps a single sign-on token fresh; stopped with the connection.
    refresher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = &self.refresher {
            task.abort();
        }
    }
}

/// A launch report goes out within this, or not at all.
const REPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reports still being sent beyond this many are not started (a launch never waits for one).
const MAX_REPORTS_IN_FLIGHT: usize = 32;
/// How long the app's state waits to learn the token's roles.
const WHOAMI_TIMEOUT: Duration = Duration::from_secs(3);
/// How many ended sessions the list keeps for the user to see.
const MAX_ENDED: usize = 10;

pub struct Service {
    home: PathBuf,
    face: Face,
    connect: Connect,
    connection: RwLock<Connection>,
    lab: tokio::sync::Mutex<Option<Lab>>,
    sessions: Mutex<Vec<Arc<Session>>>,
    /// Sessions that ended by themselves (the gateway lost, the network gone), newest last,
    /// until the user dismisses them: an end nobody saw would look like a session that was
    /// never there. At most `MAX_ENDED`.
    ended: Mutex<Vec<SessionInfo>>,
    history: History,
    logs: LaunchLogs,
    settings: Mutex<Settings>,
    changed: watch::Sender<u64>,
    /// Launch reports on their way to the router.
    reports: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Service {
    /// Connect as `options.connect` says (starting the embedded lab when that is the way).
    pub async fn start(options: Options) -> Result<Self> {
        let Options {
            home,
            face,
            connect,
            logs,
        } = options;
        let settings: Settings = std::fs::read(home.join("app.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut lab = None;
        let connection = open(&home, &connect, &mut lab).await?;
        let (changed, _) = watch::channel(0);
        Ok(Self {
            history: History::new(home.join("history.jsonl")),
            home,
            face,
            connect,
            connection: RwLock::new(connection),
            lab: tokio::sync::Mutex::new(lab),
            sessions: Mutex::new(Vec::new()),
            ended: Mutex::new(Vec::new()),
            logs,
            settings: Mutex::new(settings),
            changed,
            reports: Mutex::new(Vec::new()),
        })
    }

    /// Bumped whenever sessions, the history or the connection change (the tray and the UI
    /// follow it).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn bump(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    pub async fn app_state(&self) -> AppStateView {
        let (router_url, lab, token_set) = {
            let connection = self.connection.read().await;
            let token_set = !connection.token.is_empty();
            (connection.router_url.clone(), connection.lab, token_set)
        };
        let roles = match self.whoami().await {
            Ok(me) => me.roles,
            Err(e) => {
                tracing::info!(code = %e.code(), error = %e, "the router did not say who this token is");
                Vec::new()
            }
        };
        AppStateView {
            router_url,
            profile: self.profile(),
            lab,
            token_set,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            support: roles
                .iter()
                .any(|r| r == sallyport_protocol::report::SUPPORT_ROLE),
            roles,
        }
    }

    /// Who the token is at the router (asked once per connection, within a few seconds).
    pub async fn whoami(&self) -> Result<WhoAmI> {
        let (launcher, cell) = {
            let connection = self.connection.read().await;
            (connection.launcher.clone(), connection.whoami.clone())
        };
        let me = cell
            .get_or_try_init(|| async {
                tokio::time::timeout(WHOAMI_TIMEOUT, launcher.api().whoami())
                    .await
                    .map_err(|_| {
                        CoreError::Timeout(WHOAMI_TIMEOUT, "the router to say who this token is")
                    })?
            })
            .await?;
        Ok(me.clone())
    }

    /// Every user's launches at the router matching `query`, newest first (support role).
    pub async fn support_launches(
        &self,
        query: &LaunchQuery,
        limit: Option<u32>,
    ) -> Result<LaunchList> {
        self.launcher().await.api().launches(query, limit).await
    }

    /// Per-phase percentiles of the launches matching `query`, grouped (support role).
    pub async fn support_stats(
        &self,
        query: &LaunchQuery,
        group_by: GroupBy,
    ) -> Result<LaunchStats> {
        self.launcher()
            .await
            .api()
            .launch_stats(query, group_by)
            .await
    }

    /// Read and check a diagnostic bundle (an exported file's bytes).
    pub fn open_bundle(&self, bytes: &[u8]) -> Result<BundleView> {
        bundle::read(bytes)
    }

    fn profile(&self) -> Profile {
        self.settings.lock().unwrap().profile
    }

    /// The resources this token may launch, with their sticky ports and client choices.
    pub async fn resources(&self) -> Result<Vec<ResourceView>> {
        let launcher = self.launcher().await;
        let ports = self.ports();
        let list = launcher.resources().await?;
        Ok(list
            .into_iter()
            .map(|r| ResourceView {
                sticky_port: ports.get(&r.name),
                client_choices: native_client::choices(&r.protocol, self.face),
                name: r.name,
                protocol: r.protocol,
                gateway: r.gateway,
                online: r.online,
            })
            .collect())
    }

    async fn launcher(&self) -> Arc<Launcher> {
        self.connection.read().await.launcher.clone()
    }

    fn ports(&self) -> StickyPorts {
        StickyPorts::new(self.home.join("ports.json"))
    }

    /// Remember `port` for `resource`, or forget its port with `None`.
    pub fn set_sticky_port(&self, resource: &str, port: Option<u16>) -> Result<()> {
        match port {
            None => self.ports().forget(resource),
            Some(port) if port < 1024 => Err(CoreError::InvalidPort(port)),
            Some(port) => self.ports().remember(resource, port),
        }
    }

    /// Launch; every checkpoint is handed to `on_checkpoint` as it happens. The launch lands in
    /// the history either way, and a session joins the list (close it with
    /// [`close_session`](Self::close_session)).
    pub async fn launch(
        &self,
        options: LaunchOptions,
        on_checkpoint: impl Fn(&Checkpoint) + Send + Sync + 'static,
    ) -> Result<Arc<Session>> {
        let launcher = self.launcher().await;
        let profile = options.profile.unwrap_or_else(|| self.profile());
        let started_unix_ms = unix_ms();
        let tunables = Tunables::from_env(profile)?;
        let client = match options.client {
            ClientChoice::Default if self.face == Face::Desktop => {
                let protocol = resource_protocol(&launcher, &options.resource).await;
                ClientChoice::Default.resolve(&protocol, self.face)
            }
            other => other,
        };
        let mut request = LaunchRequest::new(&options.resource, tunables);
        request.port = options.port;
        request.client = client;
        request.trickle = options.trickle;
        let observer: Observer = Arc::new(on_checkpoint);
        let launched = launcher.launch_observed(request, Some(observer)).await;
        let record = LaunchRecord {
            launch_id: launched.launch_id.clone(),
            resource: options.resource.clone(),
            profile,
            started_unix_ms,
            outcome: match launched.result {
                Ok(_) => Outcome::Ok,
                Err(_) => Outcome::Failed,
            },
            error: launched.result.as_ref().err().map(|e| LaunchError {
                code: e.code(),
                message: e.to_string(),
            }),
            total_ms: launched.checkpoints.last().map_or(0.0, |c| c.total_ms),
            checkpoints: launched.checkpoints,
        };
        if let Err(e) = self.history.append(&record) {
            tracing::warn!(error = %e, "could not record the launch in the history");
        }
        if self.connection.read().await.launch_reports {
            self.send_report(&launcher, &record);
        }
        let session = Arc::new(launched.result.inspect_err(|_| self.bump())?);
        self.sessions.lock().unwrap().push(session.clone());
        self.bump();
        Ok(session)
    }

    /// Send the router the launch's report in the background: never waited for by the launch,
    /// given up after a few seconds, and its failure only logged.
    fn send_report(&self, launcher: &Launcher, record: &LaunchRecord) {
        let mut reports = self.reports.lock().unwrap();
        reports.retain(|r| !r.is_finished());
        if reports.len() >= MAX_REPORTS_IN_FLIGHT {
            tracing::info!(launch_id = %record.launch_id, "launch report not sent: too many in flight");
            return;
        }
        let api = launcher.api().clone();
        let report = record.report();
        reports.push(tokio::spawn(async move {
            match api.report_launch(&report, REPORT_TIMEOUT).await {
                Ok(()) => tracing::debug!(launch_id = %report.launch_id, "launch report sent"),
                Err(e) if e.code() == Code::ReportsDisabled => {
                    tracing::debug!("the router keeps no launch reports")
                }
                Err(e) => tracing::info!(
                    launch_id = %report.launch_id,
                    code = %e.code(),
                    error = %e.message(),
                    "launch report not sent"
                ),
            }
        }));
    }

    /// Wait (at most `within`) for the launch reports still on their way; the CLI calls it
    /// before it exits.
    pub async fn flush_reports(&self, within: Duration) {
        let pending: Vec<_> = self.reports.lock().unwrap().drain(..).collect();
        let _ = tokio::time::timeout(within, futures_util::future::join_all(pending)).await;
    }

    /// Launch, and follow the session in the background until it ends by itself (then it
    /// leaves the list). What the app's launch button and the tray's relaunch both do.
    pub async fn launch_supervised(
        self: &Arc<Self>,
        options: LaunchOptions,
        on_checkpoint: impl Fn(&Checkpoint) + Send + Sync + 'static,
    ) -> Result<SessionInfo> {
        let session = self.launch(options, on_checkpoint).await?;
        let service = Arc::clone(self);
        let supervised = session.clone();
        tokio::spawn(async move { service.supervise(&supervised).await });
        Ok(session.info())
    }

    /// Follow a session until it ends by itself (its tube, whatever its client does: the
    /// app's sessions outlive the terminal window a client ran in), then drop it.
    async fn supervise(&self, session: &Session) {
        // Its state (reconnecting and back) shows in the app and the tray as it changes.
        let mut states = session.state_changes();
        let end = loop {
            tokio::select! {
                end = session.wait_tunnel() => break end,
                Ok(()) = states.changed() => self.bump(),
            }
        };
        tracing::info!(launch_id = session.launch_id(), ?end, "session ended");
        // Off the open list and onto the ended one in one step, so nobody ever sees it twice.
        {
            let mut sessions = self.sessions.lock().unwrap();
            sessions.retain(|s| s.launch_id() != session.launch_id());
            if let Some(ended) = end.unexpected() {
                let mut ended_list = self.ended.lock().unwrap();
                ended_list.push(SessionInfo {
                    state: SessionState::Closed,
                    ended: Some(ended),
                    ..session.info()
                });
                let excess = ended_list.len().saturating_sub(MAX_ENDED);
                ended_list.drain(..excess);
            }
        }
        self.bump();
        session.close().await;
    }

    /// Close a session and take it off the list (and so off the tray).
    async fn end_session(&self, session: &Session) {
        session.close().await;
        let removed = {
            let mut sessions = self.sessions.lock().unwrap();
            let before = sessions.len();
            sessions.retain(|s| s.launch_id() != session.launch_id());
            sessions.len() != before
        };
        if removed {
            self.bump();
        }
    }

    fn session(&self, launch_id: &str) -> Option<Arc<Session>> {
        self.sessions
            .lock()
            .unwrap()
            .iter()
            .find(|s| s.launch_id() == launch_id)
            .cloned()
    }

    /// The open sessions, then those that ended by themselves and are not dismissed yet
    /// (state `closed`, with `ended` saying why).
    pub fn sessions(&self) -> Vec<SessionInfo> {
        // Both locks at once (in the order `supervise` takes them): one consistent picture.
        let sessions = self.sessions.lock().unwrap();
        let ended = self.ended.lock().unwrap();
        let mut list: Vec<SessionInfo> = sessions.iter().map(|s| s.info()).collect();
        list.extend(ended.iter().rev().cloned());
        list
    }

    /// Close an open session, or dismiss one that ended by itself.
    pub async fn close_session(&self, launch_id: &str) -> Result<()> {
        if let Some(session) = self.session(launch_id) {
            self.end_session(&session).await;
            return Ok(());
        }
        let dismissed = {
            let mut ended = self.ended.lock().unwrap();
            let before = ended.len();
            ended.retain(|s| s.launch_id != launch_id);
            ended.len() != before
        };
        if !dismissed {
            return Err(CoreError::UnknownSession(launch_id.to_owned()));
        }
        self.bump();
        Ok(())
    }

    /// Close every session and stop the lab (the app quitting).
    pub async fn close_all(&self) {
        let sessions: Vec<_> = self.sessions.lock().unwrap().drain(..).collect();
        for s in sessions {
            s.close().await;
        }
        if let Some(lab) = self.lab.lock().await.take() {
            lab.shutdown().await;
        }
        self.bump();
    }

    /// Every recorded launch, newest first, from the app and the CLI alike.
    pub fn history(&self) -> Vec<LaunchRecord> {
        self.history.records()
    }

    /// The last `n` distinct resources launched, newest first.
    pub fn recent_resources(&self, n: usize) -> Vec<String> {
        let mut seen = Vec::new();
        for r in self.history.records() {
            if seen.len() == n {
                break;
            }
            if !seen.contains(&r.resource) {
                seen.push(r.resource);
            }
        }
        seen
    }

    pub async fn settings(&self) -> SettingsView {
        let connection = self.connection.read().await;
        SettingsView {
            router_url: connection.router_url.clone(),
            profile: self.profile(),
            token_set: !connection.token.is_empty(),
            sso_issuer: self.user_profile().and_then(|p| p.sso).map(|s| s.issuer),
            signed_in: connection.refresher.is_some(),
        }
    }

    /// Save the settings; a new router URL or token reconnects (and stops the lab).
    pub async fn save_settings(
        &self,
        router_url: &str,
        profile: Profile,
        token: Option<String>,
    ) -> Result<()> {
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
            self.bump();
            return Ok(());
        }
        // Keep the pinned gateway keys of an existing profile; a lab profile is not kept.
        let profile_path = self.profile_path();
        let mut client_profile = ClientProfile::load(&profile_path)
            .ok()
            .filter(|p| !p.lab)
            .unwrap_or_else(|| ClientProfile::new(router_url));
        client_profile.router_url = router_url.to_owned();
        client_profile.token = None;
        client_profile.validate()?;
        if let Some(token) = &token {
            sallyport_core::secrets::store_token(router_url, token.trim())?;
        }
        client_profile.save(&profile_path)?;
        self.reconnect().await
    }

    /// The pinned gateways with their fingerprints: the profile file's (a profile that is
    /// not the lab's), else those of the router launches go to (the lab's own).
    pub async fn pinned_gateways(&self) -> Vec<PinnedGateway> {
        match self.user_profile() {
            Some(profile) => PinnedGateway::list(&profile),
            None => PinnedGateway::list(self.launcher().await.profile()),
        }
    }

    /// The profile file launches read: the CLI's (whatever wrote it), or the app's when it is
    /// not one `sallyport lab` wrote (the app runs its own lab instead of that one).
    fn user_profile(&self) -> Option<ClientProfile> {
        let profile = ClientProfile::load(&self.profile_path()).ok()?;
        match self.connect {
            Connect::Profile(_) => Some(profile),
            Connect::RouterOrLab => Some(profile).filter(|p| !p.lab),
        }
    }

    /// Change the pins of the embedded lab's own profile, the one its launches use, while no
    /// profile of the user's is there (else `None`: nothing changed).
    async fn change_lab_pins(
        &self,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<()>,
    ) -> Result<Option<Vec<PinnedGateway>>> {
        if self.user_profile().is_some() {
            return Ok(None);
        }
        let pins = {
            let mut lab = self.lab.lock().await;
            let Some(lab) = lab.as_mut() else {
                return Ok(None);
            };
            change(&mut lab.profile.gateways)?;
            PinnedGateway::list(&lab.profile)
        };
        self.reconnect().await?;
        Ok(Some(pins))
    }

    fn require_user_profile(&self) -> Result<()> {
        match self.user_profile() {
            Some(_) => Ok(()),
            None => Err(CoreError::Profile(
                "no router profile to pin into: import your administrator's profile, or set a router URL, first".into(),
            )),
        }
    }

    /// Pin `key` for `gateway` (the user accepted its fingerprint, or typed the key an
    /// administrator gave them); launches use it at once.
    pub async fn pin_gateway(&self, gateway: &str, key: &str) -> Result<Vec<PinnedGateway>> {
        let pin = |gateways: &mut BTreeMap<String, String>| {
            let key = check_pin(gateway, key.trim()).map_err(CoreError::Profile)?;
            gateways.insert(gateway.to_owned(), key.to_base64());
            Ok(())
        };
        if let Some(pins) = self.change_lab_pins(pin).await? {
            tracing::info!(gateway, "gateway key pinned in the embedded lab");
            return Ok(pins);
        }
        self.require_user_profile()?;
        let profile = sallyport_core::import::pin(&self.profile_path(), gateway, key)?;
        tracing::info!(gateway, "gateway key pinned");
        self.reconnect().await?;
        Ok(PinnedGateway::list(&profile))
    }

    /// Remove the pin of `gateway`: its next launch asks again.
    pub async fn unpin_gateway(&self, gateway: &str) -> Result<Vec<PinnedGateway>> {
        let unpin = |gateways: &mut BTreeMap<String, String>| match gateways.remove(gateway) {
            Some(_) => Ok(()),
            None => Err(CoreError::Profile(format!(
                "gateways.{gateway}: no such pinned gateway"
            ))),
        };
        if let Some(pins) = self.change_lab_pins(unpin).await? {
            return Ok(pins);
        }
        self.require_user_profile()?;
        let profile = sallyport_core::import::unpin(&self.profile_path(), gateway)?;
        self.reconnect().await?;
        Ok(PinnedGateway::list(&profile))
    }

    /// Import a profile an administrator distributed (its text; `origin` names it in errors
    /// and anchors its relative `ca_file`), then connect to its router when a token is there.
    pub async fn import_profile(&self, text: &str, origin: &Path) -> Result<ImportView> {
        // The embedded lab's own profile (its router): its pins go to the lab, whose router
        // lives only as long as the app and whose token the file does not carry.
        let (router_url, imported) = sallyport_core::import::router_and_pins(text, origin)?;
        let lab_url = self.lab.lock().await.as_ref().map(|lab| lab.router.url());
        if lab_url.as_deref() == Some(router_url.as_str()) {
            let merge = |gateways: &mut BTreeMap<String, String>| {
                gateways.extend(imported);
                Ok(())
            };
            if let Some(gateways) = self.change_lab_pins(merge).await? {
                return Ok(ImportView {
                    router_url,
                    ca_file: None,
                    sso: None,
                    gateways,
                });
            }
        }
        let profile = sallyport_core::import::import_profile(text, origin, &self.profile_path())?;
        if let Err(e) = self.reconnect().await {
            // The import stands; the router needs a token (or a sign-in) first.
            tracing::info!(code = %e.code(), error = %e, "imported; not connected yet");
        }
        Ok(ImportView {
            router_url: profile.router_url.clone(),
            ca_file: profile.ca_file.as_ref().map(|p| p.display().to_string()),
            sso: profile.sso.clone(),
            gateways: PinnedGateway::list(&profile),
        })
    }

    /// [`import_profile`](Self::import_profile) of a file.
    pub async fn import_profile_file(&self, file: &Path) -> Result<ImportView> {
        let text = std::fs::read_to_string(file).map_err(|e| CoreError::ProfileImport {
            file: file.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        self.import_profile(&text, file).await
    }

    /// Sign in with the profile's OpenID provider through the system browser (authorization
    /// code with PKCE and a loopback redirect), keep the tokens in the OS keyring, and connect
    /// with them. What the app's Settings "Sign in" does.
    pub async fn sso_sign_in(&self) -> Result<()> {
        self.sso_sign_in_with(sso::open_in_browser).await
    }

    /// [`sso_sign_in`](Self::sso_sign_in) with another way to open the URL (tests drive the
    /// provider's pages themselves).
    pub async fn sso_sign_in_with(&self, open: impl FnOnce(&str) -> Result<()>) -> Result<()> {
        let profile = self.user_profile().filter(|p| p.sso.is_some()).ok_or_else(|| {
            CoreError::Profile(
                "no sign-in provider: import your administrator's profile (its [sso] section) first".into(),
            )
        })?;
        let settings = profile.sso.as_ref().expect("filtered above");
        let tokens = sso::SsoClient::new(settings)?.browser_login(open).await?;
        sso::store(&profile.router_url, &tokens)?;
        self.reconnect().await
    }

    /// Open the connection anew (a changed profile or token).
    async fn reconnect(&self) -> Result<()> {
        let mut lab = self.lab.lock().await;
        let connection = open(&self.home, &self.connect, &mut lab).await?;
        *self.connection.write().await = connection;
        self.bump();
        Ok(())
    }

    fn profile_path(&self) -> PathBuf {
        match &self.connect {
            Connect::Profile(path) => path.clone(),
            Connect::RouterOrLab => self.home.join("profile.toml"),
        }
    }

    /// Write the diagnostic bundle of a recorded launch; returns its path.
    pub async fn export_bundle(&self, launch_id: &str) -> Result<PathBuf> {
        let record = self
            .history
            .find(launch_id)
            .ok_or_else(|| CoreError::UnknownLaunch(launch_id.to_owned()))?;
        let connection = self.connection.read().await;
        let tunables = Tunables::from_env(record.profile)
            .unwrap_or_else(|_| Tunables::for_profile(record.profile));
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

/// The resource's protocol, from the cache or the router (`tcp` when neither knows it: the
/// launch itself then says what is wrong).
async fn resource_protocol(launcher: &Launcher, resource: &str) -> String {
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

/// The router token for `profile`, or the error that says where to put one: the profile's
/// own or `SALLYPORT_TOKEN` when given, else a single sign-on token (refreshed if need be)
/// when the profile has `[sso]` and the user signed in, else the keyring's static token. With
/// a sign-in, its tokens come along so they can be kept fresh.
pub async fn token_for(profile: &ClientProfile) -> Result<(String, Option<sso::Tokens>)> {
    let explicit =
        profile.token.is_some() || std::env::var("SALLYPORT_TOKEN").is_ok_and(|t| !t.is_empty());
    if !explicit && profile.sso.is_some() {
        if let Some(tokens) = sso::current_tokens(profile).await? {
            return Ok((tokens.id_token.clone(), Some(tokens)));
        }
    }
    let token = sallyport_core::secrets::token_for(profile)?.ok_or(CoreError::MissingToken)?;
    Ok((token, None))
}

/// Refresh a sign-in's ID token before it expires, for as long as the connection lives;
/// every later request carries the new one.
fn keep_fresh(
    profile: ClientProfile,
    mut tokens: sso::Tokens,
    shared: sallyport_core::router_api::SharedToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let wait = tokens.remaining().saturating_sub(sso::REFRESH_MARGIN);
            // Never more often than every 2 s, whatever the provider's lifetimes.
            tokio::time::sleep(wait.max(std::time::Duration::from_secs(2))).await;
            match sso::current_tokens(&profile).await {
                Ok(Some(fresh)) => {
                    *shared.write().unwrap() = fresh.id_token.clone();
                    tracing::info!(expires_in = ?fresh.remaining(), "signed-in token refreshed");
                    tokens = fresh;
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(code = %e.code(), error = %e, "cannot refresh the sign-in");
                    tokio::time::sleep(std::time::Duration::from_secs(30)).await;
                }
            }
        }
    })
}

/// The user's router: a profile (not one `sallyport lab` wrote for its throwaway router) with
/// a token; `None` means the app should start its own lab.
async fn configured_router(home: &Path) -> Option<(ClientProfile, (String, Option<sso::Tokens>))> {
    let profile = match ClientProfile::load(&home.join("profile.toml")) {
        Ok(profile) if !profile.lab => profile,
        Ok(_) => return None,
        Err(e) => {
            tracing::info!(error = %e, "no usable client profile");
            return None;
        }
    };
    match token_for(&profile).await {
        Ok(token) => Some((profile, token)),
        Err(e) => {
            tracing::info!(code = %e.code(), error = %e, "no router token");
            None
        }
    }
}

/// The connection `connect` asks for. The lab slot keeps the embedded lab across reconnects;
/// connecting to a router stops it.
async fn open(home: &Path, connect: &Connect, lab_slot: &mut Option<Lab>) -> Result<Connection> {
    let ports = StickyPorts::new(home.join("ports.json"));
    let router = match connect {
        Connect::Profile(path) => {
            let profile = ClientProfile::load(path)?;
            let token = token_for(&profile).await?;
            Some((profile, token))
        }
        Connect::RouterOrLab => configured_router(home).await,
    };
    if let Some((profile, (token, signed_in))) = router {
        if let Some(lab) = lab_slot.take() {
            lab.shutdown().await;
        }
        let launcher = Launcher::new(profile.clone(), &token, ports)?.with_state_dir(home.into());
        let refresher =
            signed_in.map(|tokens| keep_fresh(profile.clone(), tokens, launcher.shared_token()));
        return Ok(Connection {
            launcher: Arc::new(launcher),
            launch_reports: profile.launch_reports,
            router_url: profile.router_url,
            token,
            lab: false,
            whoami: Arc::default(),
            refresher,
        });
    }
    if lab_slot.is_none() {
        let lab = Lab::start(LabOptions::default())
            .await
            .map_err(CoreError::LabFailed)?;
        tracing::info!(router = %lab.router.url(), "no router configured; started the embedded lab");
        *lab_slot = Some(lab);
    }
    let lab = lab_slot.as_ref().expect("lab started above");
    let launcher =
        Launcher::new(lab.profile.clone(), &lab.client_token, ports)?.with_state_dir(home.into());
    Ok(Connection {
        launcher: Arc::new(launcher),
        router_url: lab.router.url(),
        token: lab.client_token.clone(),
        lab: true,
        launch_reports: lab.profile.launch_reports,
        whoami: Arc::default(),
        refresher: None,
    })
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
