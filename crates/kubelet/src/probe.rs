//! Liveness, readiness and startup probes, as kubelet's prober: one async
//! task per probe of a running container (no thread, and asleep between
//! periods), running `exec` in the container or `httpGet`, `tcpSocket`,
//! `grpc` from inside the pod's network namespace, and reporting each
//! failure and each thresholded change of result to the pod worker.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use crate::seams::ContainerRuntime;
use skiff_runtime::sandbox::Sandbox;
use tokio::sync::mpsc;

/// `kube-probe/<major>.<minor>`, as upstream sends.
const USER_AGENT: &str = "kube-probe/1.32";

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Liveness,
    Readiness,
    Startup,
}

impl Kind {
    /// As events say it: `Liveness probe failed: …`.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }

    /// What a probe reports before it has run: readiness and startup start
    /// out failing, liveness passing.
    fn initial(self) -> bool {
        self == Kind::Liveness
    }
}

/// What a probe task tells the pod worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub container: String,
    /// The runtime id of the container attempt probed (stale reports are dropped).
    pub runtime_id: String,
    pub kind: Kind,
    pub event: ReportEvent,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportEvent {
    /// One probe run failed (for the `Unhealthy` event).
    Failed(String),
    /// The thresholded result changed.
    Changed(bool),
}

/// Consecutive results against the thresholds; decides when the result flips.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    success: i32,
    failure: i32,
    result: bool,
    successes: i32,
    failures: i32,
}

impl Thresholds {
    pub fn new(kind: Kind, probe: &Probe) -> Self {
        Self {
            success: probe.success_threshold.unwrap_or(1).max(1),
            failure: probe.failure_threshold.unwrap_or(3).max(1),
            result: kind.initial(),
            successes: 0,
            failures: 0,
        }
    }

    /// Records one run; returns the new result if it changed.
    pub fn observe(&mut self, success: bool) -> Option<bool> {
        if success {
            self.successes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.successes = 0;
        }
        let flip = if self.result {
            !success && self.failures >= self.failure
        } else {
            success && self.successes >= self.success
        };
        if flip {
            self.result = !self.result;
            return Some(self.result);
        }
        None
    }
}

/// Where a probe runs.
#[derive(Clone)]
pub struct Target {
    pub runtime: std::sync::Arc<dyn ContainerRuntime>,
    pub runtime_id: String,
    pub sandbox: Sandbox,
    pub pod_ip: String,
    pub container: Container,
}

fn seconds(value: Option<i32>, default: i32) -> Duration {
    Duration::from_secs(u64::try_from(value.unwrap_or(default).max(0)).unwrap_or(0))
}

/// Runs one probe until the task is aborted (the container stopped) or,
/// for a startup probe, until it has succeeded.
pub async fn run(kind: Kind, probe: Probe, target: Target, reports: mpsc::UnboundedSender<Report>) {
    let period = seconds(probe.period_seconds, 10).max(Duration::from_secs(1));
    let mut thresholds = Thresholds::new(kind, &probe);
    tokio::time::sleep(seconds(probe.initial_delay_seconds, 0)).await;
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let outcome = probe_once(&probe, &target).await;
        let send = |event| {
            reports.send(Report {
                container: target.container.name.clone(),
                runtime_id: target.runtime_id.clone(),
                kind,
                event,
            })
        };
        if let Err(message) = &outcome {
            if send(ReportEvent::Failed(message.clone())).is_err() {
                return;
            }
        }
        if let Some(result) = thresholds.observe(outcome.is_ok()) {
            if send(ReportEvent::Changed(result)).is_err() {
                return;
            }
            if kind == Kind::Startup && result {
                return;
            }
        }
    }
}

/// Runs the probe's handler once: `Ok` on success, else why it failed.
pub async fn probe_once(probe: &Probe, target: &Target) -> Result<(), String> {
    let timeout = seconds(probe.timeout_seconds, 1).max(Duration::from_secs(1));
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let output = target
            .runtime
            .exec_output(&target.runtime_id, &command, timeout)
            .await
            .map_err(|e| e.to_string())?;
        if output.timed_out {
            return Err(format!("command {:?} timed out", command.join(" ")));
        }
        return match output.exit_code {
            0 => Ok(()),
            _ => Err(output.output),
        };
    }
    if let Some(http) = &probe.http_get {
        let port = resolve_port(&http.port, &target.container)?;
        let host = http
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.clone());
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let scheme = http.scheme.clone().unwrap_or_else(|| "HTTP".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let request = HttpProbe {
            https: scheme.eq_ignore_ascii_case("HTTPS"),
            host,
            port,
            path,
            headers,
        };
        return tokio::time::timeout(timeout, request.run(&target.sandbox))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "Get \"{}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)",
                    request.url()
                ))
            });
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = resolve_port(&tcp.port, &target.container)?;
        let host = tcp
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| target.pod_ip.clone());
        let address = socket_address(&host, port)?;
        return target
            .sandbox
            .connect(address, timeout)
            .await
            .map(drop)
            .map_err(|e| dial_error("tcp", &address, &e));
    }
    if let Some(grpc) = &probe.grpc {
        let port = u16::try_from(grpc.port).map_err(|_| format!("invalid port {}", grpc.port))?;
        let address = socket_address(&target.pod_ip, port)?;
        let service = grpc.service.clone().unwrap_or_default();
        return tokio::time::timeout(timeout, grpc_check(&target.sandbox, address, &service))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "timeout: health rpc did not complete within {}s",
                    timeout.as_secs()
                ))
            });
    }
    Err("missing probe handler".into())
}

/// A port by number, or by the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).map_err(|_| format!("invalid port {n}")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name)),
    }
}

fn socket_address(host: &str, port: u16) -> Result<std::net::SocketAddr, String> {
    let ip: std::net::IpAddr = match host {
        "localhost" => std::net::Ipv4Addr::LOCALHOST.into(),
        other => other
            .parse()
            .map_err(|_| format!("unsupported probe host {other:?} (an IP address is needed)"))?,
    };
    Ok(std::net::SocketAddr::new(ip, port))
}

/// Go's wording of a failed dial (`dial tcp 10.42.0.5:81: connect:
/// connection refused`), which is what users search for; `network` is
/// `tcp` or `tcp4`.
pub fn dial_error(network: &str, address: &std::net::SocketAddr, error: &std::io::Error) -> String {
    let cause = match error.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => error.to_string(),
    };
    format!("dial {network} {address}: {cause}")
}

struct HttpProbe {
    https: bool,
    host: String,
    port: u16,
    path: String,
    headers: Vec<(String, String)>,
}

impl HttpProbe {
    fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{}", self.port, self.path)
    }

    async fn run(&self, sandbox: &Sandbox) -> Result<(), String> {
        let url = self.url();
        let address = socket_address(&self.host, self.port)?;
        let tcp = sandbox
            .connect(address, Duration::from_secs(3600))
            .await
            .map_err(|e| format!("Get {url:?}: {}", dial_error("tcp", &address, &e)))?;
        let mut request = hyper::Request::get(&self.path)
            .header(hyper::header::HOST, format!("{}:{}", self.host, self.port))
            .header(hyper::header::USER_AGENT, USER_AGENT)
            .header(hyper::header::ACCEPT, "*/*")
            .header(hyper::header::CONNECTION, "close");
        if let Some(headers) = request.headers_mut() {
            for (name, value) in &self.headers {
                let (Ok(name), Ok(value)) = (
                    hyper::header::HeaderName::from_bytes(name.as_bytes()),
                    hyper::header::HeaderValue::from_str(value),
                ) else {
                    continue;
                };
                // An empty value removes a default header, as upstream.
                if value.is_empty() {
                    headers.remove(&name);
                } else {
                    headers.insert(name, value);
                }
            }
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        let status = if self.https {
            let connector = tokio_rustls::TlsConnector::from(insecure_tls());
            let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                .map_err(|e| format!("Get {url:?}: {e}"))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("Get {url:?}: {e}"))?;
            send(hyper_util::rt::TokioIo::new(tls), request).await
        } else {
            send(hyper_util::rt::TokioIo::new(tcp), request).await
        }
        .map_err(|e| format!("Get {url:?}: {e}"))?;
        if (200..400).contains(&status) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {status}"))
        }
    }
}

async fn send<IO>(io: IO, request: hyper::Request<Empty<Bytes>>) -> Result<u16, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    // Read (and drop) a bounded part of the body, as upstream reads 10 KiB.
    let _ = tokio::time::timeout(Duration::from_millis(200), response.into_body().frame()).await;
    Ok(status)
}

/// `grpc.health.v1.Health/Check` over plaintext HTTP/2.
async fn grpc_check(
    sandbox: &Sandbox,
    address: std::net::SocketAddr,
    service: &str,
) -> Result<(), String> {
    let tcp = sandbox
        .connect(address, Duration::from_secs(3600))
        .await
        .map_err(|e| {
            format!(
                "failed to connect service {:?}: {}",
                address.to_string(),
                dial_error("tcp", &address, &e)
            )
        })?;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    // HealthCheckRequest { string service = 1; } in a gRPC frame.
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a);
        message.push(u8::try_from(service.len()).map_err(|_| "service name too long")?);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = vec![0u8];
    frame.extend_from_slice(&u32::try_from(message.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&message);
    let request = hyper::Request::post(format!("http://{address}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .body(Full::new(Bytes::from(frame)))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0")
        .to_string();
    if grpc_status != "0" {
        return Err(format!("health rpc failed with grpc-status {grpc_status}"));
    }
    // HealthCheckResponse { ServingStatus status = 1; } — SERVING is 1.
    let body = collected.to_bytes();
    let status = body
        .get(5..)
        .and_then(|m| m.windows(2).find(|w| w[0] == 0x08).map(|w| w[1]))
        .unwrap_or(0);
    match status {
        1 => Ok(()),
        2 => Err("service unhealthy (responded with \"NOT_SERVING\")".into()),
        3 => Err("service unhealthy (responded with \"SERVICE_UNKNOWN\")".into()),
        _ => Err("service unhealthy (responded with \"UNKNOWN\")".into()),
    }
}

/// HTTPS probes do not verify certificates, as upstream.
fn insecure_tls() -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth()
        });
    match config {
        Ok(config) => Arc::new(config),
        Err(_) => Arc::new(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(success: i32, failure: i32) -> Probe {
        Probe {
            success_threshold: Some(success),
            failure_threshold: Some(failure),
            ..Default::default()
        }
    }

    #[test]
    fn liveness_flips_after_failure_threshold_consecutive_failures() {
        let mut t = Thresholds::new(Kind::Liveness, &probe(1, 3));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None, "a success resets the count");
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(true), Some(true));
    }

    #[test]
    fn readiness_starts_failing_and_needs_success_threshold() {
        let mut t = Thresholds::new(Kind::Readiness, &probe(2, 1));
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(false), Some(false));
    }

    #[test]
    fn named_ports_resolve_through_the_container() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "c", "ports": [{"name": "http", "containerPort": 8080}]
        }))
        .unwrap_or_default();
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &container),
            Ok(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(81), &container), Ok(81));
        assert!(resolve_port(&IntOrString::String("nope".into()), &container).is_err());
    }
}
