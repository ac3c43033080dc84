"""One run or one fused group, from a config to result.json, in any process (the only `python -m`
entries: run.worker); what may fuse; finished runs scored on other tasks or exported; run dirs renamed to the
id their records compute now (rehash: an id may solve a budget on the meta device)."""
