//! An in-memory [`DeviceStore`] for tests and the simulator-backed demo.
//!
//! The refresh lock is a set of locked profiles plus a condition variable
//! rather than a `MutexGuard`, because the lock is held across an HTTP
//! exchange and must be `Send`.

use std::collections::{HashMap, HashSet};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use super::store::{DeviceStore, StoreError, StoredToken, TokenLock};

/// The profile a fresh [`MemoryStore`] works on.
pub const DEFAULT_PROFILE: &str = "default";

#[derive(Default, Clone)]
struct Profile {
    host: Option<String>,
    token: Option<StoredToken>,
}

/// Profiles kept in a map; see the module docs.
pub struct MemoryStore {
    current: String,
    profiles: Mutex<HashMap<String, Profile>>,
    locked: Mutex<HashSet<String>>,
    released: Condvar,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new(DEFAULT_PROFILE)
    }
}

impl MemoryStore {
    /// An empty store whose current profile is `current`.
    pub fn new(current: &str) -> Self {
        Self {
            current: current.to_owned(),
            profiles: Mutex::default(),
            locked: Mutex::default(),
            released: Condvar::new(),
        }
    }

    fn profiles(&self) -> MutexGuard<'_, HashMap<String, Profile>> {
        // A panic elsewhere cannot leave a profile half-written: every
        // mutation is a single assignment.
        self.profiles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn unlock(&self, profile: &str) {
        self.locked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(profile);
        self.released.notify_all();
    }
}

impl DeviceStore for MemoryStore {
    fn current_profile(&self) -> Result<String, StoreError> {
        Ok(self.current.clone())
    }

    fn host(&self, profile: &str) -> Result<Option<String>, StoreError> {
        Ok(self.profiles().get(profile).and_then(|p| p.host.clone()))
    }

    fn set_host(&self, profile: &str, host: &str) -> Result<(), StoreError> {
        self.profiles().entry(profile.to_owned()).or_default().host = Some(host.to_owned());
        Ok(())
    }

    fn load_token(&self, profile: &str) -> Result<Option<StoredToken>, StoreError> {
        Ok(self.profiles().get(profile).and_then(|p| p.token.clone()))
    }

    fn save_token(&self, profile: &str, token: &StoredToken) -> Result<(), StoreError> {
        *self.profiles().entry(profile.to_owned()).or_default() = Profile {
            host: Some(token.host.clone()),
            token: Some(token.clone()),
        };
        Ok(())
    }

    fn delete_token(&self, profile: &str) -> Result<bool, StoreError> {
        Ok(self
            .profiles()
            .get_mut(profile)
            .and_then(|p| p.token.take())
            .is_some())
    }

    fn lock_token(&self, profile: &str) -> Result<Box<dyn TokenLock + '_>, StoreError> {
        let mut locked = self.locked.lock().unwrap_or_else(PoisonError::into_inner);
        while locked.contains(profile) {
            locked = self
                .released
                .wait(locked)
                .unwrap_or_else(PoisonError::into_inner);
        }
        locked.insert(profile.to_owned());
        drop(locked);
        let token = self.load_token(profile)?;
        Ok(Box::new(MemoryLock {
            store: self,
            profile: profile.to_owned(),
            token,
        }))
    }
}

struct MemoryLock<'a> {
    store: &'a MemoryStore,
    profile: String,
    token: Option<StoredToken>,
}

impl TokenLock for MemoryLock<'_> {
    fn token(&self) -> Option<&StoredToken> {
        self.token.as_ref()
    }

    fn commit(self: Box<Self>, token: &StoredToken) -> Result<(), StoreError> {
        self.store.save_token(&self.profile, token)
        // Dropping `self` releases the lock.
    }
}

impl Drop for MemoryLock<'_> {
    fn drop(&mut self) {
        self.store.unlock(&self.profile);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    fn token(access: &str) -> StoredToken {
        StoredToken {
            access_token: access.into(),
            refresh_token: Some("r".into()),
            expires_at_ms: 1,
            client_id: "cid".into(),
            host: "h.example".into(),
        }
    }

    #[test]
    fn logout_keeps_the_host() {
        let store = MemoryStore::default();
        store.save_token("default", &token("a")).unwrap();
        assert!(store.delete_token("default").unwrap());
        assert!(!store.delete_token("default").unwrap());
        assert_eq!(store.host("default").unwrap().as_deref(), Some("h.example"));
        assert!(store.load_token("default").unwrap().is_none());
    }

    #[test]
    fn a_second_lock_waits_for_the_first_commit() {
        let store = Arc::new(MemoryStore::default());
        store.save_token("default", &token("a")).unwrap();
        let first = store.lock_token("default").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let other = store.clone();
        let waiter = std::thread::spawn(move || {
            let lock = other.lock_token("default").unwrap();
            tx.send(lock.token().unwrap().access_token.clone()).unwrap();
        });
        // The waiter cannot get the lock while `first` holds it.
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
        first.commit(&token("b")).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), "b");
        waiter.join().unwrap();
    }
}
