//! Whether the client of a request has hung up, for requests that only wait.
//!
//! actix-web keeps serving a request whose client has gone until the request writes something
//! (actix/actix-web#1313), so a long-poll would otherwise hold its place, its waiter and its
//! task for the whole wait. Each connection keeps a duplicate of its socket; a waiting request
//! watches it for the end of the stream.

use std::any::Any;
use std::os::fd::{AsFd, OwnedFd};

use actix_web::HttpRequest;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;

/// A connection's socket, as [`remember_socket`] duplicated it.
struct ClientSocket(OwnedFd);

/// For [`actix_web::HttpServer::on_connect`]: keeps a duplicate of the connection's socket with
/// the connection. It is closed with the connection, so it never keeps one open.
pub(crate) fn remember_socket(connection: &dyn Any, data: &mut Extensions) {
    if let Some(stream) = connection.downcast_ref::<TcpStream>()
        && let Ok(socket) = stream.as_fd().try_clone_to_owned()
    {
        data.insert(ClientSocket(socket));
    }
}

/// `work`'s output, or `None` once the client of `request` has hung up (see [`hung_up`]).
pub(crate) async fn unless_hung_up<T>(
    request: &HttpRequest,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        done = work => Some(done),
        () = hung_up(request) => None,
    }
}

/// Resolves once the client of `request` has closed its connection or reset it; never, while it
/// is there or when that cannot be told. A client that sends more on the connection (a pipelined
/// request) is there: the data is left for the server to read.
async fn hung_up(request: &HttpRequest) {
    if let Some(stream) = watchable(request) {
        let mut first = [0u8; 1];
        match stream.peek(&mut first).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    std::future::pending().await
}

fn watchable(request: &HttpRequest) -> Option<TcpStream> {
    let ClientSocket(socket) = request.conn_data::<ClientSocket>()?;
    let socket = std::net::TcpStream::from(socket.try_clone().ok()?);
    socket.set_nonblocking(true).ok()?;
    TcpStream::from_std(socket).ok()
}
