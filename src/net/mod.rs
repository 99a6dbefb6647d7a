//! A ready-made network host: sockets, threads and elections for an [`Env`](crate::Env).
pub mod frame;
