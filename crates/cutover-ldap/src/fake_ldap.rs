//! Test support: reading one LDAP message (BER) off a socket, for the tests' fake servers.

/// One whole LDAPMessage (tag, length, body) read from `s`; `None` when the peer is gone.
pub(crate) async fn read_message(s: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut msg = vec![0u8; 2];
    s.read_exact(&mut msg).await.ok()?;
    let mut len = usize::from(msg[1]);
    if msg[1] & 0x80 != 0 {
        let mut l = vec![0u8; usize::from(msg[1] & 0x7f)];
        s.read_exact(&mut l).await.ok()?;
        len = l.iter().fold(0, |a, b| (a << 8) | usize::from(*b));
        msg.extend(&l);
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).await.ok()?;
    msg.extend(body);
    Some(msg)
}
