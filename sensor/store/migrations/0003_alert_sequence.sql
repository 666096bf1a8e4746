-- zonewarden store, version 3: an insertion sequence on alerts.
-- Every insert of an alert, and every change of one (a larger count, a later last_ts, a triage status),
-- gives the row the next number of this sequence (the writer takes MAX(seq) + 1 inside its write
-- transaction). The alert stream (GET /api/v1/alerts/stream) follows it, not packet time, so alerts from a
-- replay of old captures into a running server are streamed too, and a client resumes with Last-Event-ID.
-- Rows written before this version keep 0: older than anything a stream will send.

ALTER TABLE alerts ADD COLUMN seq BIGINT NOT NULL DEFAULT 0;

CREATE INDEX alerts_seq ON alerts (seq);

CREATE INDEX alerts_last_ts ON alerts (last_ts);
