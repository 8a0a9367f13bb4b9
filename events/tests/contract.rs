//! The in-process broker against the broker contract.

use std::sync::Arc;

use conveyor_events::{Broker, MemoryBroker, Topology};

async fn connect(topology: &Topology) -> Arc<dyn Broker> {
    let broker = MemoryBroker::new();
    broker.declare_groups(topology);
    Arc::new(broker)
}

conveyor_broker_contract::broker_contract!(connect);
