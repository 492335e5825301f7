//! Locks that survive a panicked holder. The agent's shared state stays
//! consistent between statements (a panic cannot leave half an update behind
//! a lock that matters), so a poisoned lock is taken as it is rather than
//! spreading the panic to every later user.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads `lock`, poisoned or not.
pub fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `lock`, poisoned or not.
pub fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_still_taken() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let rw = std::sync::Arc::new(RwLock::new(1));
        let (m, r) = (mutex.clone(), rw.clone());
        let panicked = std::thread::spawn(move || {
            let _m = m.lock().expect("first lock");
            let _r = r.write().expect("first write");
            panic!("poison both");
        })
        .join();
        assert!(panicked.is_err(), "the thread panicked while holding both");
        assert!(mutex.is_poisoned() && rw.is_poisoned(), "both are poisoned");
        *lock(&mutex) += 1;
        *write(&rw) += 1;
        assert_eq!(*lock(&mutex), 2, "the mutex is usable");
        assert_eq!(*read(&rw), 2, "the rwlock is usable");
    }
}
