//! The client protocol: one request per line, one answer per line.
//!
//! ```text
//! put KEY VALUE                         -> OK <gen>/<lsn> | NOTPERM <gen>/<lsn> | REDIRECT <addr> | ERR <reason>
//! get KEY [linearizable|follower|stale] -> VALUE <v> | NOTFOUND | REDIRECT <addr> | ERR <reason>
//! status                                -> key=value ...
//! members                               -> MEMBERS <eid>@<addr> ... | MEMBERS none (not a member yet) | MEMBERS static ...
//! shutdown                              -> OK shutting down (the node stops)
//! quit                                  -> (closes this connection)
//! ```

use std::time::Duration;

use dbrep::{ConfigFlag, Env, Lsn, ReadLevel, Role};

use super::Node;

/// How long a read may wait for the master's confirmation or for catching up.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What a line asks for, besides its answer.
pub enum After {
    Continue,
    Close,
    Shutdown,
}

fn lsn(l: Lsn) -> String {
    format!("{}:{}", l.file, l.offset)
}

fn role_name(role: Option<Role>) -> &'static str {
    match role {
        Some(Role::Master) => "master",
        Some(Role::Client) => "client",
        _ => "none",
    }
}

/// Answers one request line.
pub fn answer(node: &Node, line: &str) -> (String, After) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let reply = match words.as_slice() {
        ["put", key, value] => put(node, key, value),
        ["put", ..] => "ERR usage: put KEY VALUE".to_string(),
        ["get", key] => get(node, key, "linearizable"),
        ["get", key, level] => get(node, key, level),
        ["get", ..] => "ERR usage: get KEY [linearizable|follower|stale]".to_string(),
        ["status"] => status(node),
        ["members"] => members(node),
        ["shutdown"] => return ("OK shutting down".into(), After::Shutdown),
        ["quit"] => return ("OK bye".into(), After::Close),
        [] => "ERR empty request".to_string(),
        [cmd, ..] => format!(
            "ERR unknown command {:?}; try put, get, status, members, shutdown, quit",
            truncate(cmd)
        ),
    };
    (reply, After::Continue)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// `REDIRECT <addr>` to the master's client address (from the client
/// address the master put in its handshake), or `ERR` when no master (or
/// its address) is known.
fn redirect(node: &Node) -> String {
    let Some(m) = node.env.rep_stat(false).master else {
        return "ERR no master is known yet; retry".into();
    };
    if m == node.id {
        // Deposed between the role check and now: the next master is not known yet.
        return "ERR this site is no longer master; retry".into();
    }
    let addr = node
        .net
        .peer_info(m)
        .and_then(|p| String::from_utf8(p.app_data).ok())
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok());
    match addr {
        Some(addr) => format!("REDIRECT {addr}"),
        None => format!("ERR site {m} is master but its client address is not known here"),
    }
}

fn put(node: &Node, key: &str, value: &str) -> String {
    let env: &Env = &node.env;
    if env.role() != Role::Master {
        return redirect(node);
    }
    let mut txn = env.txn();
    txn.put(key.as_bytes(), value.as_bytes());
    match txn.commit() {
        Ok(info) if info.permanent => format!("OK {}/{}", info.token.gen, lsn(info.lsn)),
        Ok(info) => format!("NOTPERM {}/{}", info.token.gen, lsn(info.lsn)),
        Err(e) if env.role() != Role::Master => {
            log::debug!("put on a deposed master: {e}");
            redirect(node)
        }
        Err(e) => format!("ERR {}", one_line(&e.to_string())),
    }
}

fn get(node: &Node, key: &str, level: &str) -> String {
    let level = match level {
        "linearizable" => ReadLevel::Linearizable,
        "follower" => ReadLevel::Follower,
        "stale" => ReadLevel::Stale,
        other => {
            return format!(
                "ERR unknown read level {:?}; use linearizable, follower or stale",
                truncate(other)
            )
        }
    };
    let env = &node.env;
    if level == ReadLevel::Linearizable && env.role() != Role::Master {
        return redirect(node);
    }
    match env.get_at(key.as_bytes(), level, READ_TIMEOUT) {
        Ok(Some(v)) => format!("VALUE {}", String::from_utf8_lossy(&v)),
        Ok(None) => "NOTFOUND".into(),
        Err(e) => format!("ERR {}", one_line(&e.to_string())),
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

fn status(node: &Node) -> String {
    let env = &node.env;
    let s = env.rep_stat(false);
    let connected: Vec<String> = node
        .net
        .stats()
        .peers
        .iter()
        .filter(|p| p.connected)
        .map(|p| p.eid.to_string())
        .collect();
    format!(
        "id={} role={} master={} gen={} lsn={} perm={} nsites={} priority={} keys={} digest={:016x} listen={} client={} peers={} connected={}",
        node.id,
        role_name(s.role),
        s.master.map_or("none".to_string(), |m| m.to_string()),
        s.gen,
        lsn(env.last_lsn()),
        lsn(s.perm_lsn),
        nsites(env),
        env.rep_get_priority(),
        env.len(),
        env.store_digest(),
        node.net.advertised_addr(),
        node.client_addr,
        list(&node.peers),
        if connected.is_empty() { "none".into() } else { connected.join(",") },
    )
}

fn list(addrs: &[std::net::SocketAddr]) -> String {
    let v: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(",")
    }
}

/// The size of the group: its membership's in membership mode (0 while
/// this site knows of none), else the configured `--nsites`.
fn nsites(env: &Env) -> u32 {
    if env.rep_get_config(ConfigFlag::GroupMembership) {
        env.rep_membership().map_or(0, |g| g.len() as u32)
    } else {
        env.rep_get_nsites()
    }
}

/// The group in force here, from this site's log (`eid@address`, `(view)`
/// for a member that may not become master); with `--nsites`, the static
/// configuration.
fn members(node: &Node) -> String {
    let env = &node.env;
    if !env.rep_get_config(ConfigFlag::GroupMembership) {
        return format!(
            "MEMBERS static nsites={} self={}@{} peers={}",
            env.rep_get_nsites(),
            node.id,
            node.net.advertised_addr(),
            list(&node.peers)
        );
    }
    match env.rep_membership() {
        Some(g) if !g.is_empty() => format!("MEMBERS {g}"),
        _ => "MEMBERS none".into(),
    }
}
