//! The pending places one client may hold: a client is a peer address, and
//! no one address may take more than its share of the connections waiting
//! for a slot. So a load tester holding thousands of connections from one
//! machine fills at most that share, and a phone from anywhere else still
//! finds a place, evicts one of the flood's connections and inherits its
//! slot. Behind a proxy every connection has the proxy's address: there
//! the proxy is the one client, and its own limits decide.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Pending places per peer address, shared by the accept loop (which
/// takes them) and the waiting connections (which give them back).
#[derive(Clone)]
pub struct PeerShares {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    /// The most one address may hold at once.
    cap: usize,
}

/// One pending place of one peer, given back on drop.
#[derive(Debug)]
pub struct PeerShare {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    peer: IpAddr,
}

impl PeerShares {
    /// One address may hold at most half of `places` (at least one).
    pub fn new(places: usize) -> PeerShares {
        PeerShares {
            held: Arc::default(),
            cap: (places / 2).max(1),
        }
    }

    /// A place for `peer`, or `None` when it holds its share already.
    pub fn take(&self, peer: IpAddr) -> Option<PeerShare> {
        let peer = peer.to_canonical();
        let mut held = lock(&self.held);
        let n = held.entry(peer).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(PeerShare {
            held: self.held.clone(),
            peer,
        })
    }
}

impl Drop for PeerShare {
    fn drop(&mut self) {
        let mut held = lock(&self.held);
        if let Some(n) = held.get_mut(&self.peer) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

fn lock(held: &Mutex<HashMap<IpAddr, usize>>) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
    // Never held across an await; the counts stay right through a panic
    // elsewhere, since each change is one statement.
    held.lock().unwrap_or_else(|e| e.into_inner())
}
