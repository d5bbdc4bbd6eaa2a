//! A subscriber's event stream, whatever the wire: what it missed after the event it names
//! (from the database), then live events (from the hub), each once and in feed order, and
//! at the end why it ended.
//!
//! Server-Sent Events (`/v1/events`) and GraphQL subscriptions (`subscription { events }`)
//! both serve this stream and differ only in how they write an event and an ending; the
//! WebSocket's channels keep their own loop, since one connection multiplexes several.

use std::{collections::VecDeque, sync::Arc};

use futures_util::Stream;

use super::{
    Cursor, Event, Filter,
    session::{Closed, Next, Session},
};
use crate::{
    error::Error,
    events::feed::{Position, Since},
};

/// Where an event stream starts.
#[derive(Debug, Clone)]
pub enum Resume {
    /// After the event the client saw last: what it missed first.
    After(Cursor),
    /// Live, with what the subscriber had already seen ([`Session::now`]).
    Now(Since),
}

impl Resume {
    /// After `after` when the client named an event, else live from now.
    pub async fn from(session: &Session, after: Option<Cursor>) -> Result<Self, Error> {
        Ok(match after {
            Some(after) => Self::After(after),
            None => Self::Now(session.now().await?),
        })
    }
}

/// Why an event stream ended: its session closed, or reading what was missed failed.
#[derive(Debug)]
pub enum Ended {
    Closed(Closed),
    Failed(Error),
}

impl Ended {
    /// The stable code a transport states (`slow_consumer`, `going_away`, a refusal's).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Closed(closed) => closed.code(),
            Self::Failed(error) => error.code(),
        }
    }

    /// A sentence for the client.
    pub fn message(&self) -> String {
        match self {
            Self::Closed(closed) => closed.message(),
            Self::Failed(error) => error.to_string(),
        }
    }

    /// The application's error behind the end, when there is one (a refused credential,
    /// a failed read), with its details.
    pub fn into_error(self) -> Option<Error> {
        match self {
            Self::Closed(Closed::Refused(error)) | Self::Failed(error) => Some(error),
            Self::Closed(_) => None,
        }
    }
}

enum Phase {
    /// Reading what the client missed, after this position.
    CatchUp(Position),
    Live,
    Done,
}

struct State {
    session: Session,
    filter: Filter,
    /// What was sent (or passed over): live events it covers are not sent again.
    since: Since,
    phase: Phase,
    ready: VecDeque<Arc<Event>>,
}

/// The events `filter` selects that the session's principal may read, from `resume` on;
/// the last item is `Err` with why it ended (the stream never ends otherwise).
///
/// The session registered with the hub before the catch-up reads the database, so a live
/// event committed meanwhile is buffered, and skipped if the catch-up already sent it:
/// nothing is missed, nothing repeated.
pub fn events(
    session: Session,
    filter: Filter,
    resume: Resume,
) -> impl Stream<Item = Result<Arc<Event>, Ended>> + Send {
    let (since, phase) = match resume {
        Resume::After(Cursor(after)) => (Since::after(after), Phase::CatchUp(after)),
        Resume::Now(now) => (now, Phase::Live),
    };
    let state = State {
        session,
        filter,
        since,
        phase,
        ready: VecDeque::new(),
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop_front() {
                return Some((Ok(event), state));
            }
            match state.phase {
                Phase::Done => return None,
                Phase::CatchUp(after) => match state.session.missed(&state.filter, after).await {
                    Ok(missed) => {
                        state.ready.extend(missed.events);
                        state.since.advance(missed.next);
                        state.phase = if missed.done {
                            Phase::Live
                        } else {
                            Phase::CatchUp(missed.next)
                        };
                    }
                    Err(error) => {
                        state.phase = Phase::Done;
                        return Some((Err(Ended::Failed(error)), state));
                    }
                },
                Phase::Live => match state.session.next().await {
                    Next::Event(event) => {
                        if state.since.admits(event.position) && state.filter.matches(&event) {
                            state.since.advance(event.position);
                            return Some((Ok(event), state));
                        }
                    }
                    Next::Broadcast(_) => {}
                    Next::Closed(closed) => {
                        state.phase = Phase::Done;
                        return Some((Err(Ended::Closed(closed)), state));
                    }
                },
            }
        }
    })
}
