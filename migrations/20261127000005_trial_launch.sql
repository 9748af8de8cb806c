-- How each trial got its server (issue 5): 'restart' (new process), 'reload' (same process,
-- model loaded again) or 'reuse' (same process and model); NULL when no server was started.
-- load_ms: the model load the trial waited for (Ollama's load_duration of the preload), in ms.
ALTER TABLE trials ADD COLUMN launch TEXT;
ALTER TABLE trials ADD COLUMN load_ms REAL;
