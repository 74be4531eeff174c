//! The little the driver reads from and adds to session descriptions itself.

/// The `mid` and m-line index of the data-channel (`m=application`) section.
pub(crate) fn application_section(sdp: &str) -> Option<(String, u16)> {
    let mut index: i32 = -1;
    let mut in_application = false;
    for line in sdp.lines() {
        let line = line.trim_end();
        if let Some(media) = line.strip_prefix("m=") {
            index += 1;
            in_application = media.starts_with("application");
        } else if in_application {
            if let Some(mid) = line.strip_prefix("a=mid:") {
                return Some((mid.to_owned(), index as u16));
            }
        }
    }
    None
}

/// `sdp` with `candidates` (each `candidate:...`, the JSON form's `candidate` string) added to
/// the section at m-line `index`, followed by `a=end-of-candidates` when `complete`.
pub(crate) fn with_candidates(
    sdp: &str,
    index: u16,
    candidates: &[String],
    complete: bool,
) -> String {
    let mut out = String::with_capacity(sdp.len() + candidates.len() * 100);
    let mut section: i32 = -1;
    let mut added = false;
    let add = |out: &mut String| {
        for c in candidates {
            let line = c.strip_prefix("a=").unwrap_or(c);
            let line = if line.starts_with("candidate:") {
                line.to_owned()
            } else {
                format!("candidate:{line}")
            };
            if !sdp.contains(&line) {
                out.push_str("a=");
                out.push_str(&line);
                out.push_str("\r\n");
            }
        }
        if complete && !sdp.contains("a=end-of-candidates") {
            out.push_str("a=end-of-candidates\r\n");
        }
    };
    for line in sdp.lines() {
        if line.starts_with("m=") {
            if section == index as i32 && !added {
                add(&mut out);
                added = true;
            }
            section += 1;
        }
        out.push_str(line.trim_end());
        out.push_str("\r\n");
    }
    if !added && section == index as i32 {
        add(&mut out);
    }
    out
}

/// Whether the offer asks the answerer to be the DTLS client (`a=setup:passive`, RFC 5763 §5).
pub(crate) fn offers_passive(sdp: &str) -> bool {
    sdp.lines().any(|line| line.trim_end() == "a=setup:passive")
}

/// The offer with `a=setup:actpass` made `a=setup:passive`: the offerer stays the DTLS server.
pub(crate) fn as_passive(sdp: &str) -> String {
    sdp.lines()
        .map(|line| match line.trim_end() {
            "a=setup:actpass" => "a=setup:passive",
            line => line,
        })
        .fold(String::with_capacity(sdp.len()), |mut out, line| {
            out.push_str(line);
            out.push_str("\r\n");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:a\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:data\r\na=sctp-port:5000\r\n";

    #[test]
    fn an_offer_made_passive_says_so_and_nothing_else_changes() {
        let offer = format!("{SDP}a=setup:actpass\r\n");
        assert!(!offers_passive(&offer));
        let passive = as_passive(&offer);
        assert!(offers_passive(&passive));
        assert_eq!(passive.replace("a=setup:passive", "a=setup:actpass"), offer);
        assert!(!offers_passive("a=setup:active\r\n"));
    }

    #[test]
    fn finds_the_data_section_among_others() {
        assert_eq!(application_section(SDP), Some(("data".into(), 1)));
        assert_eq!(application_section("v=0\r\n"), None);
    }

    #[test]
    fn candidates_land_in_their_section() {
        let out = with_candidates(
            SDP,
            1,
            &["candidate:1 1 udp 2130706431 127.0.0.1 4000 typ host".into()],
            true,
        );
        let data = out.split("m=application").nth(1).unwrap();
        assert!(data.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 4000 typ host\r\n"));
        assert!(data.ends_with("a=end-of-candidates\r\n"));
        assert!(!out
            .split("m=application")
            .next()
            .unwrap()
            .contains("candidate"));
        // Idempotent: nothing is added twice.
        assert_eq!(
            with_candidates(
                &out,
                1,
                &["candidate:1 1 udp 2130706431 127.0.0.1 4000 typ host".into()],
                true
            ),
            out
        );
    }
}
