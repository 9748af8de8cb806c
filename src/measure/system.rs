//! Resource readings of this machine and of a server's process tree (sysinfo).
//!
//! One long-lived `sysinfo::System` per sampler, as sysinfo recommends. Owns: the host
//! fingerprint facts (CPU, cores, RAM), peak RSS of a process tree, and this process's own CPU
//! time. Does not know what the processes are.

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// Facts about the host that make a study's figures comparable, stored with the study.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    pub cpu_model: String,
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
    pub ram_bytes: u64,
    pub os: String,
}

/// Read the host facts.
pub fn host() -> Host {
    let mut sys = System::new().expect("sysinfo supports this platform");
    sys.refresh_memory();
    sys.refresh_cpu_all();
    Host {
        cpu_model: sys.cpus().first().map(|c| c.brand().trim().to_string()).unwrap_or_default(),
        logical_cores: sys.cpus().len(),
        physical_cores: System::physical_core_count().ok(),
        ram_bytes: sys.total_memory(),
        os: System::long_os_version().unwrap_or_default(),
    }
}

/// Samples the summed RSS of a process and all its descendants.
pub struct TreeSampler {
    sys: System,
    root: Pid,
}

impl TreeSampler {
    pub fn new(root_pid: u32) -> TreeSampler {
        TreeSampler { sys: System::new().expect("sysinfo supports this platform"), root: Pid::from_u32(root_pid) }
    }

    /// Current summed RSS of the tree, in bytes; 0 once the root has exited.
    pub fn rss_bytes(&mut self) -> u64 {
        self.sys.refresh_processes_specifics(ProcessesToUpdate::All, true, ProcessRefreshKind::nothing().with_memory());
        let procs = self.sys.processes();
        if !procs.contains_key(&self.root) {
            return 0;
        }
        // Walk parent links: a process is in the tree if its ancestry reaches the root. Threads
        // are listed too (as children of their process, with its RSS): skip them, or a
        // 20-thread server would count its memory 20 times.
        let mut tree: HashSet<Pid> = HashSet::from([self.root]);
        let mut grew = true;
        while grew {
            grew = false;
            for (pid, p) in procs {
                if p.thread_kind().is_none() && !tree.contains(pid) && p.parent().is_some_and(|pp| tree.contains(&pp)) {
                    tree.insert(*pid);
                    grew = true;
                }
            }
        }
        tree.iter().filter_map(|pid| procs.get(pid)).map(|p| p.memory()).sum()
    }
}

/// CPU time (user + system) this process has used so far.
pub fn own_cpu_time() -> Duration {
    // SAFETY: getrusage only writes into the struct we pass.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The pid of the process listening on loopback `port` (from `/proc/net/tcp{,6}` and the
/// socket links in `/proc/*/fd`), so service mode can sample the service's RSS. `None` when it
/// cannot be told (another user's process, not Linux).
pub fn listening_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else { continue };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // local_address is HEXIP:HEXPORT; state 0A = LISTEN; inode is field 9.
            let listening = f.get(3) == Some(&"0A");
            let local_port = f.get(1).and_then(|a| a.rsplit(':').next()).and_then(|p| u16::from_str_radix(p, 16).ok());
            if listening
                && local_port == Some(port)
                && let Some(inode) = f.get(9)
            {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(link) = std::fs::read_link(fd.path())
                && inodes.iter().any(|i| link.as_os_str() == i.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm_rss(pid: u32) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    #[test]
    fn tree_rss_counts_each_process_once() {
        // Several threads must not multiply the figure (sysinfo lists threads as tasks). A child
        // of its own, so that servers other tests start under this process do not count.
        let script = "import threading, time\nfor _ in range(4): threading.Thread(target=time.sleep, args=(3,)).start()\nprint('up', flush=True)\ntime.sleep(3)";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line).unwrap();
        let mut s = TreeSampler::new(child.id());
        let sampled = s.rss_bytes();
        let direct = vm_rss(child.id());
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(sampled > 1024 * 1024);
        assert!((sampled as f64) < direct as f64 * 1.5, "tree RSS {sampled} vs /proc VmRSS {direct}");
    }

    #[test]
    fn host_facts_are_read() {
        let h = host();
        assert!(h.logical_cores >= 1);
        assert!(h.ram_bytes > 0);
    }
    #[test]
    fn finds_the_listening_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(super::listening_pid(port), Some(std::process::id()));
        drop(listener);
        assert_eq!(super::listening_pid(port), None);
    }
}
