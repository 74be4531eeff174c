//! Per-resource cache of the resolve step: served when fresh, refreshed in the background
//! after each hit, dropped when a launch through it fails.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sallyport_protocol::ResourceInfo;

pub struct ResourceCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, (ResourceInfo, Instant)>>,
}

impl ResourceCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The cached entry, if younger than the TTL.
    pub fn get_fresh(&self, name: &str) -> Option<ResourceInfo> {
        let entries = self.entries.lock().unwrap();
        entries
            .get(name)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(info, _)| info.clone())
    }

    /// Replace the cache with a fresh listing.
    pub fn store_all(&self, list: &[ResourceInfo]) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap();
        entries.clear();
        for info in list {
            entries.insert(info.name.clone(), (info.clone(), now));
        }
    }

    pub fn drop_entry(&self, name: &str) {
        self.entries.lock().unwrap().remove(name);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.lock().unwrap().contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str) -> ResourceInfo {
        ResourceInfo {
            name: name.into(),
            protocol: "tcp".into(),
            gateway: "g".into(),
            online: true,
            gateway_key: None,
        }
    }

    #[test]
    fn fresh_entries_are_served_and_stale_or_dropped_are_not() {
        let cache = ResourceCache::new(Duration::from_secs(60));
        cache.store_all(&[info("a"), info("b")]);
        assert!(cache.get_fresh("a").is_some());
        cache.drop_entry("a");
        assert!(cache.get_fresh("a").is_none());
        let stale = ResourceCache::new(Duration::ZERO);
        stale.store_all(&[info("a")]);
        assert!(stale.get_fresh("a").is_none());
    }
}
