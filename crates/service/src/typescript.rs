//! The TypeScript side of the IPC line, generated from the Rust types (ts-rs) and the core's
//! registries (codes, checkpoint names), so the UI copies none of them by hand. The file is
//! checked in as `ui/src/generated/ipc.ts`; the service's test `generated_typescript_is_fresh`
//! fails when it is stale and rewrites it when `SALLYPORT_WRITE_TYPES=1`.

use sallyport_core::bundle::{BundleView, Tunable};
use sallyport_core::checkpoint::names;
use sallyport_core::history::{LaunchError, LaunchRecord, Outcome};
use sallyport_core::{Checkpoint, ClientOption, Profile, SessionEnded, SessionInfo, SessionState};
use sallyport_protocol::report::{
    GroupBy, LaunchList, LaunchQuery, LaunchStats, LaunchSummary, PhaseStats, ReportCheckpoint,
    TotalStats,
};
use sallyport_protocol::Code;
use ts_rs::{Config, TS};

use crate::types::{AppStateView, CommandError, ImportView, ResourceView, SettingsView};
use sallyport_core::{PinnedGateway, SsoSettings};

/// Where the generated file lives, from the repository's root.
pub const PATH: &str = "ui/src/generated/ipc.ts";

fn decl<T: TS>(cfg: &Config, out: &mut String) {
    out.push_str("export ");
    out.push_str(&T::decl(cfg));
    out.push_str("\n\n");
}

fn string_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| format!("  '{s}',\n")).collect();
    format!("[\n{}]", quoted.concat())
}

/// The whole file.
pub fn render() -> String {
    // Every integer that crosses the line (ports, byte counts, epoch milliseconds) fits a
    // JavaScript number.
    let cfg = Config::new().with_large_int("number");
    let mut out = String::from(
        "// Generated from the Rust types by crates/service/src/typescript.rs: do not edit.\n\
         // Regenerate with `SALLYPORT_WRITE_TYPES=1 cargo test -p sallyport-service`.\n\n",
    );

    out.push_str("/** Every code of the registry (`sallyport_protocol::Code`). */\n");
    decl::<Code>(&cfg, &mut out);
    out.push_str(&format!(
        "export const CODES: readonly Code[] = {};\n\n",
        string_list(Code::ALL.iter().map(|c| c.as_str()))
    ));
    out.push_str("/** Each code's hint, as the CLI and the app show it (`Code::hint`). */\n");
    out.push_str("export const HINTS: Readonly<Record<Code, string>> = {\n");
    for code in Code::ALL.iter().chain([&Code::Unrecognized]) {
        let hint = serde_json::to_string(code.hint()).expect("strings serialize");
        out.push_str(&format!("  {}: {hint},\n", code.as_str()));
    }
    out.push_str("};\n\n");

    out.push_str("/** Checkpoint names (`sallyport_core::checkpoint::names`). */\n");
    out.push_str("export const PHASES = {\n");
    for name in names::ALL {
        out.push_str(&format!("  {}: '{name}',\n", name.to_uppercase()));
    }
    out.push_str("} as const;\nexport type Phase = (typeof PHASES)[keyof typeof PHASES];\n\n");
    out.push_str(&format!(
        "/** Followed by the attempt number: `{0}1`, `{0}2`, ... */\nexport const ATTEMPT_PREFIX = '{0}';\n\n",
        names::GATEWAY_OFFER_HTTP_ATTEMPT_PREFIX
    ));
    out.push_str(
        "/** The checkpoints of a `fast` launch that succeeds at once without a client. */\n",
    );
    out.push_str(&format!(
        "export const HAPPY_PATH: readonly string[] = {};\n\n",
        string_list(names::HAPPY_PATH.iter().copied())
    ));

    decl::<Profile>(&cfg, &mut out);
    out.push_str(&format!(
        "export const PROFILES: readonly Profile[] = {};\n\n",
        string_list(Profile::ALL.iter().map(|p| p.as_str()))
    ));
    decl::<LaunchError>(&cfg, &mut out);
    decl::<Checkpoint>(&cfg, &mut out);
    decl::<SessionState>(&cfg, &mut out);
    decl::<SessionEnded>(&cfg, &mut out);
    decl::<SessionInfo>(&cfg, &mut out);
    decl::<Outcome>(&cfg, &mut out);
    decl::<LaunchRecord>(&cfg, &mut out);
    decl::<ClientOption>(&cfg, &mut out);
    decl::<ResourceView>(&cfg, &mut out);
    decl::<AppStateView>(&cfg, &mut out);
    decl::<SettingsView>(&cfg, &mut out);
    decl::<PinnedGateway>(&cfg, &mut out);
    decl::<SsoSettings>(&cfg, &mut out);
    decl::<ImportView>(&cfg, &mut out);
    decl::<CommandError>(&cfg, &mut out);
    decl::<Tunable>(&cfg, &mut out);
    decl::<BundleView>(&cfg, &mut out);
    decl::<ReportCheckpoint>(&cfg, &mut out);
    decl::<LaunchSummary>(&cfg, &mut out);
    decl::<LaunchList>(&cfg, &mut out);
    decl::<LaunchQuery>(&cfg, &mut out);
    decl::<GroupBy>(&cfg, &mut out);
    out.push_str(&format!(
        "export const GROUP_BYS: readonly GroupBy[] = {};\n\n",
        string_list([GroupBy::Phase, GroupBy::Gateway, GroupBy::Resource].map(GroupBy::as_str))
    ));
    decl::<PhaseStats>(&cfg, &mut out);
    decl::<TotalStats>(&cfg, &mut out);
    decl::<LaunchStats>(&cfg, &mut out);
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}
