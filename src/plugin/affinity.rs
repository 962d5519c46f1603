//! A replay and its plugin process on one CPU.
//!
//! A replay and its plugin take turns: memeval writes a request and waits,
//! the plugin answers and waits. On two CPUs every request is then a
//! wake-up of a sleeping CPU (an inter-processor interrupt, which on a
//! virtual machine is an exit to the hypervisor): measured here, that cost
//! memeval 80 to 100 µs of CPU time a message, five times what its own
//! work does. On one CPU the wake-up is a plain switch. So, on Linux, while
//! a replay holds a plugin process, the replay's thread and the process's
//! main thread are pinned to the same CPU, the CPU with the fewest such
//! pairs; the thread's own CPUs are given back when the replay lets the
//! process go. Threads the plugin started before (a BLAS pool, say) stay
//! free. Elsewhere this does nothing.

/// A pair pinned to one CPU; undone when dropped.
pub struct Pin {
    #[cfg(target_os = "linux")]
    _pinned: Option<linux::Pinned>,
}

impl Pin {
    /// Pins the calling thread and process `pid`'s main thread to one CPU.
    /// Does nothing where that is not possible (and says nothing: this is
    /// only a matter of speed).
    pub fn pair(pid: u32) -> Pin {
        #[cfg(target_os = "linux")]
        {
            Pin {
                _pinned: linux::pin(pid),
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = pid;
            Pin {}
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::Mutex;

    /// Pairs pinned to each CPU, by CPU number.
    static PAIRS: Mutex<Vec<usize>> = Mutex::new(Vec::new());

    pub struct Pinned {
        tid: libc::pid_t,
        cpu: usize,
        /// The thread's CPUs before.
        before: libc::cpu_set_t,
    }

    fn mask_of(tid: libc::pid_t) -> Option<libc::cpu_set_t> {
        // SAFETY: a zeroed cpu_set_t is valid, and sched_getaffinity
        // writes at most its size.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            (libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0)
                .then_some(set)
        }
    }

    fn set_mask(tid: libc::pid_t, set: &libc::cpu_set_t) -> bool {
        // SAFETY: `set` is a valid cpu_set_t of the size given.
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
    }

    fn only(cpu: usize) -> libc::cpu_set_t {
        // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it
        // for a CPU number the kernel gave.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            set
        }
    }

    pub fn pin(pid: u32) -> Option<super::linux::Pinned> {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        let before = mask_of(tid)?;
        let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is within the set's size.
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &before) })
            .collect();
        if allowed.len() < 2 {
            return None;
        }
        let mut pairs = PAIRS.lock().unwrap_or_else(|e| e.into_inner());
        let cpu = *allowed
            .iter()
            .min_by_key(|&&c| (pairs.get(c).copied().unwrap_or(0), c))?;
        let set = only(cpu);
        let pid = libc::pid_t::try_from(pid).ok()?;
        if !set_mask(pid, &set) {
            return None;
        }
        if !set_mask(tid, &set) {
            set_mask(pid, &before);
            return None;
        }
        if pairs.len() <= cpu {
            pairs.resize(cpu + 1, 0);
        }
        pairs[cpu] += 1;
        Some(Pinned { tid, cpu, before })
    }

    impl Drop for Pinned {
        fn drop(&mut self) {
            set_mask(self.tid, &self.before);
            let mut pairs = PAIRS.lock().unwrap_or_else(|e| e.into_inner());
            pairs[self.cpu] -= 1;
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_pair_shares_one_cpu_and_the_thread_gets_its_cpus_back() {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let before = mask_of(tid).unwrap();
            let count = |s: &libc::cpu_set_t| {
                (0..libc::CPU_SETSIZE as usize)
                    // SAFETY: within the set's size.
                    .filter(|&c| unsafe { libc::CPU_ISSET(c, s) })
                    .count()
            };
            if count(&before) < 2 {
                // CI's machine has two CPUs: there, this must run.
                assert!(std::env::var_os("CI").is_none(), "one CPU in CI");
                eprintln!("SKIPPED: one CPU, nothing to pin");
                return;
            }
            let mut child = std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .unwrap();
            let pinned = pin(child.id()).expect("pinned");
            let mine = mask_of(tid).unwrap();
            let theirs = mask_of(child.id() as libc::pid_t).unwrap();
            assert_eq!(count(&mine), 1);
            // SAFETY: `cpu` is within the set's size.
            assert!(unsafe { libc::CPU_ISSET(pinned.cpu, &mine) });
            assert!(unsafe { libc::CPU_ISSET(pinned.cpu, &theirs) });
            assert_eq!(count(&theirs), 1);
            drop(pinned);
            assert_eq!(count(&mask_of(tid).unwrap()), count(&before));
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}
