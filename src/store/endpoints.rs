//! What the LLM endpoints learnt about their servers (`llm-endpoints-v1`):
//! the structured-output mode and the token budget's parameter that work,
//! by endpoint (its chat URL and model), so the next run starts there
//! instead of being refused again.

use super::{Result, Store, decode, encode};
use crate::analyze::openai::negotiate::EndpointMemory;

impl Store {
    /// Remembers what endpoint `key` learnt (replacing what it knew). The
    /// `StoreActor` calls it for a running engine; `powerpulse check` calls
    /// it offline, with no actor started (as `compact` writes), and only
    /// when it holds the file.
    pub fn put_endpoint_memory(&self, key: &str, memory: &EndpointMemory) -> Result<()> {
        let value = encode("endpoint memory", memory)?;
        self.write(|t| {
            t.llm_endpoints.insert(key, value.as_slice())?;
            Ok(())
        })
    }

    /// Everything the endpoints learnt, by endpoint key.
    pub fn endpoint_memories(&self) -> Result<Vec<(String, EndpointMemory)>> {
        self.read(|t| {
            use redb::ReadableTable;
            t.llm_endpoints
                .iter()?
                .map(|entry| {
                    let (k, v) = entry?;
                    Ok((
                        k.value().to_string(),
                        decode::<EndpointMemory>("endpoint memory", v.value())?,
                    ))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::openai::negotiate::{BudgetParameter, StructuredMode};

    #[test]
    fn what_an_endpoint_learnt_outlives_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.redb");
        let memory = EndpointMemory {
            structured: Some(StructuredMode::JsonObjectSchema),
            budget_parameter: Some(BudgetParameter::MaxTokens),
            learned_at: chrono::Utc::now(),
            reason: "HTTP 500: Input should be 'text' or 'json_object'".into(),
        };
        {
            let store = Store::open(&path).unwrap();
            assert!(store.endpoint_memories().unwrap().is_empty());
            store
                .put_endpoint_memory("http://127.0.0.1:8000/v1/chat/completions qwen", &memory)
                .unwrap();
            let mut later = memory.clone();
            later.structured = Some(StructuredMode::JsonObject);
            store.put_endpoint_memory("other gpt-4o", &later).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let memories = store.endpoint_memories().unwrap();
        assert_eq!(memories.len(), 2);
        assert_eq!(
            memories[0],
            (
                "http://127.0.0.1:8000/v1/chat/completions qwen".to_string(),
                memory
            )
        );
    }
}
