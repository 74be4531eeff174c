//! Scratch: offer → channel open for two tubes in one process, and one bulk transfer.
use sallyport_tube::{Milestone, Tube, TubeConfig, TubeEvent};
use std::time::Duration;
use std::time::Instant;

#[tokio::main]
async fn main() {
    let config = TubeConfig::default();
    for _ in 0..10 {
        let t0 = Instant::now();
        let (client, mut ce, offer) = Tube::offer(&config).await.unwrap();
        let (gateway, mut ge, answer) = Tube::answer(&config, &offer).await.unwrap();
        client.apply_answer(&answer).await.unwrap();
        let t_sig = t0.elapsed();
        let open = client
            .reached(Milestone::ChannelOpen, Duration::from_secs(5))
            .await
            .unwrap();
        let st = client.status().borrow().clone();
        println!(
            "signalling {:?} ice {:?} dtls {:?} sctp {:?} open {:?} mtu {}",
            t_sig,
            st.ice_connected.unwrap() - t0,
            st.dtls_connected.unwrap() - t0,
            st.sctp_connected.unwrap() - t0,
            open - t0,
            st.sctp_mtu
        );
        drop((ce.try_recv(), ge.try_recv()));
        let _: Option<TubeEvent> = None;
        drop(gateway);
        drop(client);
    }
}
