//! The integration tests: one binary, a module per area, one shared harness
//! (`harness`: fixture bundles, daemons, brokers, hosts, MQTT clients).
//! Everything they talk to is real: the embedded broker and Mosquitto, host
//! processes, HTTP servers, third-party clients (paho-mqtt, the `openai`
//! package) where `scripts/test.sh` installed them.

mod harness;

mod aarch64;
mod apps;
mod boards;
mod cascade;
mod chaos;
mod constrain;
mod engine;
mod import;
mod mqtt;
mod offload;
mod ort;
mod prefix;
mod quant;
mod security;
mod serve;
