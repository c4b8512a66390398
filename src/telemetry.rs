//! Logging and OpenTelemetry setup: human-readable text by default, JSON for
//! log pipelines, and OTLP traces and metrics when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set (SPEC §7).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::LogFormat;

const SERVICE_NAME: &str = "portal-access";

/// Keeps the exporters alive; flushes what they hold when dropped.
#[derive(Default)]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.tracer_provider.take() {
            let _ = provider.shutdown();
        }
        if let Some(provider) = self.meter_provider.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber, and OTLP export when the standard
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Call it inside the Tokio runtime:
/// the OTLP exporter's gRPC channel lives on it. `RUST_LOG` overrides the
/// default level.
pub fn init(format: LogFormat) -> Telemetry {
    if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        install(format, None);
        return Telemetry::default();
    }
    match otlp_providers() {
        Ok((tracer_provider, meter_provider)) => {
            opentelemetry::global::set_meter_provider(meter_provider.clone());
            install(format, Some(tracer_provider.clone()));
            tracing::info!("exporting traces and metrics over OTLP");
            Telemetry {
                tracer_provider: Some(tracer_provider),
                meter_provider: Some(meter_provider),
            }
        }
        Err(err) => {
            install(format, None);
            tracing::error!(error = %err, "OTLP export is off: the exporter could not be built");
            Telemetry::default()
        }
    }
}

/// Installs the subscriber with spans going to `tracer_provider` (tests pass
/// one with an in-memory exporter).
pub fn install(format: LogFormat, tracer_provider: Option<SdkTracerProvider>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,h2=warn"));
    let logs = match format {
        LogFormat::Text => fmt::layer().with_target(false).boxed(),
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
    };
    // Our own spans go to OpenTelemetry whatever RUST_LOG says for logs;
    // the libraries' (h2, sqlx) would only add noise and cost.
    let traces = tracer_provider.map(|provider| {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_filter(EnvFilter::new("portal_access=info"))
    });
    let result = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init();
    // A second init (tests start several servers in one process) is harmless.
    let _ = result;
}

fn otlp_providers() -> Result<(SdkTracerProvider, SdkMeterProvider), String> {
    let resource = Resource::builder().with_service_name(SERVICE_NAME).build();
    let spans = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| e.to_string())?;
    let metrics = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .build()
        .map_err(|e| e.to_string())?;
    let tracer_provider = SdkTracerProvider::builder()
        .with_resource(resource.clone())
        .with_batch_exporter(spans)
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_periodic_exporter(metrics)
        .build();
    Ok((tracer_provider, meter_provider))
}
