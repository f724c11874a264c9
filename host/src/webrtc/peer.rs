//! The subscriber PeerConnection: a str0m [`Rtc`] with one UDP socket. str0m is sans-IO, so this
//! module is its I/O: it feeds datagrams and timeouts in, sends what str0m transmits, and hands
//! the events (connection state, depacketized media) to the caller.
//!
//! One socket bound to the unspecified address serves every route. A host candidate is
//! announced for each local address that routes to a server candidate (learned by "connecting"
//! a throwaway UDP socket, which sends nothing), so the recorder needs no interface list and
//! works on loopback as on a LAN.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use str0m::change::SdpOffer;
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;

use super::WebrtcError;

/// The largest datagram we read (larger than any path MTU).
const RECV_BUFFER: usize = 2048;

pub struct Peer {
    rtc: Rtc,
    socket: UdpSocket,
    port: u16,
    /// Local address used to reach each remote IP (the `destination` str0m expects).
    routes: HashMap<IpAddr, IpAddr>,
    /// Host candidates added but not yet sent to the server.
    unsent: Vec<Candidate>,
    buf: Vec<u8>,
}

impl Peer {
    /// Binds the UDP socket and adds a host candidate for the route to `server_host`.
    pub async fn new(server_host: Option<IpAddr>) -> Result<Peer, WebrtcError> {
        let socket = UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)).await?;
        let port = socket.local_addr()?.port();
        let rtc = Rtc::builder()
            // LiveKit's subscriber offers carry only these; everything else would be refused.
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .enable_vp9(true)
            .enable_h264(true)
            .enable_h265(true)
            .enable_av1(true)
            .build(Instant::now());
        let mut peer = Peer {
            rtc,
            socket,
            port,
            routes: HashMap::new(),
            unsent: Vec::new(),
            buf: vec![0; RECV_BUFFER],
        };
        if let Some(host) = server_host {
            peer.learn_route(host);
        }
        Ok(peer)
    }

    /// The local address that routes to `remote`, announced as a host candidate the first time.
    fn learn_route(&mut self, remote: IpAddr) -> Option<IpAddr> {
        if let Some(local) = self.routes.get(&remote) {
            return Some(*local);
        }
        let probe =
            std::net::UdpSocket::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0))
                .ok()?;
        probe.connect(SocketAddr::new(remote, 9)).ok()?;
        let local = probe.local_addr().ok()?.ip();
        self.routes.insert(remote, local);
        if !self.routes.iter().any(|(r, l)| *l == local && *r != remote) {
            match Candidate::host(SocketAddr::new(local, self.port), "udp") {
                Ok(c) => {
                    tracing::debug!(candidate = %c.to_sdp_string(), "local host candidate");
                    if self.rtc.add_local_candidate(c.clone()).is_some() {
                        self.unsent.push(c);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, %local, "cannot use local address as an ICE candidate")
                }
            }
        }
        Some(local)
    }

    /// Local candidates not yet sent to the server, as `candidate_init` JSON.
    pub fn take_unsent_candidates(&mut self) -> Vec<String> {
        self.unsent
            .drain(..)
            .filter_map(|c| serde_json::to_string(&c).ok())
            .collect()
    }

    /// Applies a subscriber offer and returns the answer SDP.
    pub fn accept_offer(&mut self, sdp: &str) -> Result<String, WebrtcError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| WebrtcError::Remote {
            field: "offer",
            reason: e.to_string(),
        })?;
        // Candidates inside the offer tell us the routes before ICE starts.
        for line in sdp.lines() {
            if let Some(c) = line.trim().strip_prefix("a=")
                && let Ok(c) = Candidate::from_sdp_string(c)
            {
                self.learn_route(c.addr().ip());
            }
        }
        let answer = self.rtc.sdp_api().accept_offer(offer)?;
        Ok(answer.to_sdp_string())
    }

    /// Adds a server candidate (`candidate_init` JSON from a trickle). An empty candidate is the
    /// end-of-candidates marker.
    pub fn add_remote_candidate(&mut self, candidate_init: &str) -> Result<(), WebrtcError> {
        #[derive(serde::Deserialize)]
        struct Init {
            candidate: String,
        }
        let init: Init = serde_json::from_str(candidate_init).map_err(|e| WebrtcError::Remote {
            field: "candidate_init",
            reason: e.to_string(),
        })?;
        if init.candidate.trim().is_empty() {
            return Ok(());
        }
        let c: Candidate =
            serde_json::from_str(candidate_init).map_err(|e| WebrtcError::Remote {
                field: "candidate_init",
                reason: e.to_string(),
            })?;
        if c.proto() != Protocol::Udp {
            return Ok(());
        }
        self.learn_route(c.addr().ip());
        self.rtc.add_remote_candidate(c);
        Ok(())
    }

    /// Drains str0m: sends its datagrams, collects its events, and returns when it next wants a
    /// timeout.
    pub fn drain(&mut self, events: &mut Vec<Event>) -> Result<Instant, WebrtcError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(at) => return Ok(at),
                Output::Transmit(t) => {
                    // UDP sends do not block in practice; a full buffer is a lost packet, which
                    // RTP and ICE recover from.
                    if let Err(e) = self.socket.try_send_to(&t.contents, t.destination) {
                        tracing::debug!(error = %e, to = %t.destination, "udp send failed");
                    }
                }
                Output::Event(e) => events.push(e),
            }
        }
    }

    /// Waits for a datagram or `deadline`, then feeds it to str0m.
    pub async fn wait(&mut self, deadline: Instant) -> Result<(), WebrtcError> {
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::select! {
            r = self.socket.recv_from(&mut self.buf) => {
                let (n, source) = r?;
                let Some(local) = self.learn_route(source.ip()) else { return Ok(()) };
                let destination = SocketAddr::new(local, self.port);
                let Some(datagram) = self.buf.get(..n) else { return Ok(()) };
                match Receive::new(Protocol::Udp, source, destination, datagram) {
                    Ok(receive) => {
                        let input = Input::Receive(Instant::now(), receive);
                        if self.rtc.accepts(&input) {
                            self.rtc.handle_input(input)?;
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, %source, "dropping an unparsable datagram"),
                }
            }
            _ = sleep => self.rtc.handle_input(Input::Timeout(Instant::now()))?,
        }
        Ok(())
    }

    /// Asks the sender for a keyframe (PLI) on `mid`; a decoder cannot start without one.
    pub fn request_keyframe(&mut self, mid: Mid) {
        match self.rtc.writer(mid) {
            Some(mut w) => {
                if let Err(e) = w.request_keyframe(None, KeyframeRequestKind::Pli) {
                    tracing::debug!(error = %e, %mid, "keyframe request not sent");
                }
            }
            None => tracing::debug!(%mid, "no media for a keyframe request"),
        }
    }

    pub fn is_alive(&self) -> bool {
        self.rtc.is_alive()
    }

    pub fn disconnect(&mut self) {
        self.rtc.disconnect();
    }
}
