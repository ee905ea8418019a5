//! Seccomp profiles as OCI `linux.seccomp` objects: `RuntimeDefault` (the
//! same rules as the default profile containerd and moby apply: an allow
//! list, extra syscalls for the capabilities a container holds, everything
//! else `EPERM`), and `Localhost` profiles read from files in the
//! Docker/containerd JSON format, reduced to what runc takes. Pure.

use serde_json::{json, Map, Value};

/// Syscalls every container may make.
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset",
    "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
    "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_time64", "futex_waitv", "futimesat", "getcpu", "getcwd",
    "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid",
    "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid", "getsockname",
    "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get",
    "ioprio_set", "io_setup", "io_submit", "io_uring_enter", "io_uring_register",
    "io_uring_setup", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
    "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat",
    "lstat64", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
    "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv",
    "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep",
    "newfstatat", "_newselect", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
    "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
    "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
    "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat",
    "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr",
    "sched_getparam", "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select",
    "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile",
    "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid",
    "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid",
    "setpriority", "setregid", "setregid32", "setresgid", "setresgid32", "setresuid",
    "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list", "setsid",
    "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat",
    "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
    "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs",
    "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo",
    "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
    "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate",
    "truncate64", "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
    // Allowed on kernels 4.8 and later, where ptrace cannot bypass seccomp.
    "process_vm_readv", "process_vm_writev", "ptrace",
];

/// Syscalls a capability unlocks.
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree",
            "perf_event_open", "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns",
            "syslog", "umount", "umount2", "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    ("CAP_SYS_MODULE", &["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    ("CAP_SYS_TIME", &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYS_NICE", &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// `clone` flags that create namespaces (CLONE_NEWNS | NEWCGROUP | NEWUTS |
/// NEWIPC | NEWUSER | NEWPID | NEWNET): refused without CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u64 = 2_114_060_288;
const AF_VSOCK: u64 = 40;
const ENOSYS: u32 = 38;
const EPERM: u32 = 1;

/// The seccomp architectures of the machine this was built for.
fn architectures() -> Value {
    match std::env::consts::ARCH {
        "x86_64" => json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        "aarch64" => json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]),
        "s390x" => json!(["SCMP_ARCH_S390X", "SCMP_ARCH_S390"]),
        "riscv64" => json!(["SCMP_ARCH_RISCV64"]),
        _ => json!([]),
    }
}

fn arch_specific() -> &'static [&'static str] {
    match std::env::consts::ARCH {
        "x86_64" => &["arch_prctl", "modify_ldt"],
        "aarch64" => &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"],
        "s390x" => &["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
        "riscv64" => &["riscv_flush_icache"],
        _ => &[],
    }
}

/// The `RuntimeDefault` profile for a container holding `capabilities`.
pub fn runtime_default(capabilities: &[String]) -> Value {
    let has = |cap: &str| capabilities.iter().any(|c| c == cap);
    let mut names: Vec<&str> = ALLOWED.to_vec();
    names.extend_from_slice(arch_specific());
    for (cap, syscalls) in BY_CAPABILITY {
        if has(cap) {
            names.extend_from_slice(syscalls);
        }
    }
    names.sort_unstable();
    names.dedup();
    let mut syscalls = vec![
        json!({"names": names, "action": "SCMP_ACT_ALLOW"}),
        json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}]}),
    ];
    for persona in [0u64, 8, 131_072, 131_080, 4_294_967_295] {
        syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
                             "args": [{"index": 0, "value": persona, "op": "SCMP_CMP_EQ"}]}));
    }
    if !has("CAP_SYS_ADMIN") {
        // clone without namespace flags; clone3 cannot be filtered by
        // flags, so it reports ENOSYS and libc falls back to clone.
        let flags_arg = if std::env::consts::ARCH == "s390x" { 1 } else { 0 };
        syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": flags_arg, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]}));
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    }
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": architectures(),
        "syscalls": syscalls,
    })
}

/// A profile file (Docker/containerd format or OCI) as an OCI
/// `linux.seccomp` object: `archMap` becomes this machine's architectures,
/// rules whose `includes`/`excludes` do not fit `capabilities` are dropped.
pub fn from_profile(text: &str, capabilities: &[String]) -> Result<Value, String> {
    let profile: Value = serde_json::from_str(text).map_err(|e| format!("decoding seccomp profile failed: {e}"))?;
    let Some(map) = profile.as_object() else {
        return Err("decoding seccomp profile failed: not a JSON object".into());
    };
    let mut out = Map::new();
    for key in ["defaultAction", "defaultErrnoRet", "architectures", "flags", "listenerPath", "listenerMetadata"] {
        if let Some(value) = map.get(key) {
            out.insert(key.to_string(), value.clone());
        }
    }
    if !out.contains_key("defaultAction") {
        return Err("decoding seccomp profile failed: defaultAction is missing".into());
    }
    if map.contains_key("archMap") && !out.contains_key("architectures") {
        out.insert("architectures".into(), architectures());
    }
    let fits = |rule: &Value, key: &str, want: bool| {
        let caps = rule[key]["caps"].as_array().cloned().unwrap_or_default();
        caps.iter().all(|c| c.as_str().is_some_and(|c| capabilities.iter().any(|h| h == c)) == want)
    };
    let mut syscalls = Vec::new();
    for rule in map.get("syscalls").and_then(Value::as_array).into_iter().flatten() {
        let includes_ok = rule.get("includes").is_none_or(|_| fits(rule, "includes", true));
        let excludes_ok = rule.get("excludes").is_none_or(|_| {
            rule["excludes"]["caps"].as_array().is_none_or(|caps| caps.is_empty()) || fits(rule, "excludes", false)
        });
        if !includes_ok || !excludes_ok {
            continue;
        }
        let mut kept = Map::new();
        for key in ["names", "action", "errnoRet", "args"] {
            if let Some(value) = rule.get(key) {
                kept.insert(key.to_string(), value.clone());
            }
        }
        if let Some(name) = rule.get("name") {
            kept.insert("names".into(), json!([name]));
        }
        syscalls.push(Value::Object(kept));
    }
    out.insert("syscalls".into(), Value::Array(syscalls));
    Ok(Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().cloned().unwrap_or_default())
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect()
    }

    #[test]
    fn runtime_default_follows_the_capabilities() {
        let default: Vec<String> = crate::container::spec::DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .collect();
        let profile = runtime_default(&default);
        assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
        let allowed = names(&profile);
        assert!(allowed.iter().any(|n| n == "read"));
        assert!(allowed.iter().any(|n| n == "chroot"), "CAP_SYS_CHROOT is a default capability");
        for refused in ["mount", "unshare", "reboot", "kexec_load", "init_module"] {
            assert!(!allowed.iter().any(|n| n == refused), "{refused}");
        }
        let mut admin = default.clone();
        admin.push("CAP_SYS_ADMIN".into());
        let allowed = names(&runtime_default(&admin));
        assert!(allowed.iter().any(|n| n == "mount"));
        assert!(allowed.iter().any(|n| n == "unshare"));
    }

    #[test]
    fn docker_format_profiles_are_reduced_to_oci() -> Result<(), String> {
        let text = r#"{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "SCMP_ARCH_X86_64"}],
            "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                         {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                         {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "comment": "no"}]}"#;
        let profile = from_profile(text, &[])?;
        assert!(profile.get("archMap").is_none());
        let rules = profile["syscalls"].as_array().cloned().unwrap_or_default();
        assert_eq!(rules.len(), 2, "the CAP_SYS_ADMIN rule is dropped: {rules:?}");
        assert!(rules[1].get("comment").is_none());
        assert!(from_profile("[]", &[]).is_err());
        assert!(from_profile("{}", &[]).is_err());
        Ok(())
    }
}
