-- Why a trial ran (issue 16): the strategy's proposal ('search'), a re-measure of a point before
-- it can be named ('intensify'), the drift anchor ('anchor') or the retry of an interrupted
-- trial ('retry'). A re-measure is its own row with the same params_hash; the runs of a point
-- are its finished trials with that hash. Older trials were all proposals.
ALTER TABLE trials ADD COLUMN purpose TEXT NOT NULL DEFAULT 'search'
    CHECK (purpose IN ('search', 'intensify', 'anchor', 'retry'));
CREATE INDEX trials_by_params ON trials (study_id, params_hash);
