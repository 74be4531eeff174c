//! A trickled candidate as the gateway receives it, applied to a conversation that holds a
//! valid offer: added or refused, never a panic.
#![no_main]

const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
a=fingerprint:sha-256 A3:B6:34:8F:85:CB:7A:C1:A7:D0:37:61:54:9D:DA:F2:F5:B1:02:65:A8:90:C4:D9:62:5C:4F:58:B0:44:E3:66\r\n\
a=group:BUNDLE 0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\n\
a=setup:actpass\r\na=mid:0\r\na=sctp-port:5000\r\na=ice-ufrag:NrurVhCaDOrWRlhN\r\n\
a=ice-pwd:ORzwUHUoOczxPLvDVfTSxbQUiSMajjAi\r\n";

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if let Ok(candidate) = std::str::from_utf8(rest) {
        let mid = (selector & 1 == 1).then(|| "0".to_owned());
        let index = (selector & 2 == 2).then_some(u16::from(selector >> 2));
        sallyport_tube::fuzzing::candidate(OFFER, candidate, mid, index);
    }
});
