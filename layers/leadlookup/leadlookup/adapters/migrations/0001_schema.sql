-- Organizations, leads, messages and call summaries (design section 4).
CREATE TABLE organizations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    -- Whatever format was entered; legacy rows may lack the '+'.
    phone_number text NOT NULL UNIQUE,
    -- E.164 digits without '+': the lookup key.
    phone_number_normalized text NOT NULL UNIQUE,
    settings jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE leads (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    phone_number text NOT NULL,
    phone_number_normalized text NOT NULL,
    customer_name text,
    email text,
    status text NOT NULL DEFAULT 'new'
        CHECK (status IN ('new', 'contacted', 'qualified', 'hot', 'customer', 'closed')),
    sentiment text NOT NULL DEFAULT 'neutral'
        CHECK (sentiment IN ('positive', 'neutral', 'negative')),
    bike_interest jsonb NOT NULL DEFAULT '{}'::jsonb,
    qualification_data jsonb NOT NULL DEFAULT '{}'::jsonb,
    notes text,
    last_summary text,
    interaction_count integer NOT NULL DEFAULT 0,
    last_contact_at timestamptz,
    opted_out_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    version integer NOT NULL DEFAULT 1,
    UNIQUE (organization_id, phone_number_normalized)
);

CREATE TABLE messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    lead_id uuid REFERENCES leads (id) ON DELETE CASCADE,
    external_id text NOT NULL UNIQUE,
    direction text NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    from_number text,
    to_number text,
    body text NOT NULL DEFAULT '',
    params jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX messages_lead_id_idx ON messages (lead_id);
CREATE INDEX messages_created_at_idx ON messages (created_at);

CREATE TABLE call_summaries (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    organization_id uuid REFERENCES organizations (id) ON DELETE CASCADE,
    lead_id uuid REFERENCES leads (id) ON DELETE CASCADE,
    conversation_id text NOT NULL UNIQUE,
    summary text,
    classification text,
    payload jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX call_summaries_lead_id_idx ON call_summaries (lead_id);
CREATE INDEX call_summaries_created_at_idx ON call_summaries (created_at);
